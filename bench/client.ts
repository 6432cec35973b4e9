// Client benchmark (issue 2): what a wallet spends per lookup on the 32 MiB
// hot-lane shape — building a query (A s + e, the first with A's expansion)
// and decoding an answer — next to the server's kernel time for one K=1
// pass over the same lane, measured in the same run.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import { PirClient } from '../src/pir/client.js';
import { littleEndianWords } from '../src/pir/prg.js';
import { openLane, readEntry } from '../src/store/generation.js';
import { type BenchData, type Log, type Summary, fmt, fmtMs, fmtRatio, round, roundSummary, summarize, timeKernelPasses } from './util.js';

export interface ClientBenchOptions {
  data: BenchData;
  runs?: number;
  log: Log;
}

export async function runClientBench(opts: ClientBenchOptions): Promise<{ figures: Record<string, unknown>; lines: string[] }> {
  const runs = opts.runs ?? 20;
  const g = opts.data.generations[0]!;
  const lane = (await opts.data.info(g)).lanes.hot!;
  const crs = lane.crs; // crs.json as published
  const hint = new Uint8Array(await fsp.readFile(lane.hintPath));
  const { m, R, entries } = lane.crs;

  // Reference first, on a quiet machine: one K=1 pass over the same lane.
  const handle = await openLane(lane, 'mmap');
  let kernel: Summary;
  try {
    await handle.warm();
    kernel = summarize(await timeKernelPasses(handle, 1, 10));
    opts.log(`  kernel K=1 pass over ${fmt(handle.bytes / 2 ** 20, 0)} MiB: p50 ${fmtMs(kernel.p50)}`);

    let t0 = performance.now();
    const client = await PirClient.create(crs, hint);
    const createMs = performance.now() - t0;

    // The first prepare expands A (m x n words from AES-CTR) and caches it.
    t0 = performance.now();
    await client.prepare(1);
    const firstPrepareMs = performance.now() - t0;
    opts.log(`  create ${fmtMs(createMs)}, first prepare (A expansion) ${fmtMs(firstPrepareMs)}`);

    const prepareMs: number[] = [];
    const queryMs: number[] = [];
    const totalMs: number[] = [];
    const pending: { index: number; query: Uint8Array; state: Awaited<ReturnType<PirClient['query']>>['state'] }[] = [];
    for (let i = 0; i < runs; i++) {
      const index = crypto.randomInt(entries);
      const a = performance.now();
      if (client.prepared === 0) await client.prepare(1);
      const b = performance.now();
      const { query, state } = await client.query(index);
      const c = performance.now();
      if (i > 0) {
        // Run 0 used the pool entry prepared above together with A's expansion.
        prepareMs.push(b - a);
        queryMs.push(c - b);
        totalMs.push(c - a);
      }
      pending.push({ index, query, state });
    }

    // Answers from the real kernel (batches of up to 16), then timed decodes checked against the plaintext.
    const decodeMs: number[] = [];
    let wrong = 0;
    for (let i = 0; i < pending.length; i += 16) {
      const batch = pending.slice(i, i + 16);
      const answers = await handle.answer(batch.map((p) => littleEndianWords(p.query)));
      for (const [k, p] of batch.entries()) {
        const bytes = new Uint8Array(answers[k]!.buffer, answers[k]!.byteOffset, answers[k]!.byteLength);
        const t = performance.now();
        const entry = client.decode(bytes, p.state);
        decodeMs.push(performance.now() - t);
        if (!Buffer.from(entry).equals(await readEntry(lane, p.index))) wrong++;
      }
    }

    // Without the cached A (64 MiB less memory) every query streams A again.
    const streaming = await PirClient.create(crs, hint, { cacheMatrix: false });
    const streamMs: number[] = [];
    for (let i = 0; i < 3; i++) {
      t0 = performance.now();
      await streaming.prepare(1);
      streamMs.push(performance.now() - t0);
    }

    const prepare = summarize(prepareMs);
    const query = summarize(queryMs);
    const total = summarize(totalMs);
    const decode = summarize(decodeMs);
    const stream = summarize(streamMs);
    const figures = {
      shape: { entries, entrySize: lane.crs.entry_size, m, R, n: lane.crs.n, laneMiB: handle.bytes / 2 ** 20 },
      runs,
      createMs: round(createMs),
      firstQueryWithExpansionMs: round(firstPrepareMs),
      prepareCachedAMs: roundSummary(prepare),
      queryAfterPrepareMs: roundSummary(query),
      queryTotalCachedAMs: roundSummary(total),
      queryStreamingAMs: roundSummary(stream),
      decodeMs: roundSummary(decode),
      decodedCorrect: `${decode.n - wrong}/${decode.n}`,
      reference: { kernelK1PassMs: roundSummary(kernel) },
      ratios: {
        queryCachedVsKernelPass: round(total.p50 / kernel.p50),
        firstQueryVsKernelPass: round(firstPrepareMs / kernel.p50),
        decodeVsKernelPass: round(decode.p50 / kernel.p50, 4),
      },
    };
    const lines = [
      `client — hot-lane shape ${entries} x ${lane.crs.entry_size} B (${fmt(handle.bytes / 2 ** 20, 0)} MiB), m ${m}, R ${R}, n ${lane.crs.n}; p50 of ${runs - 1} runs`,
      `  PirClient.create (hint sha256 + key)   ${fmtMs(createMs)}`,
      `  first query, expands A (64 MiB)        ${fmtMs(firstPrepareMs)}   = ${fmtRatio(firstPrepareMs / kernel.p50)} the kernel pass`,
      `  query with A cached: A s + e           ${fmtMs(prepare.p50)} (p99 ${fmtMs(prepare.p99)})`,
      `                       + add Delta/sum   ${fmtMs(query.p50)}`,
      `                       total             ${fmtMs(total.p50)}   = ${fmtRatio(total.p50 / kernel.p50)} the kernel pass`,
      `  query streaming A (cacheMatrix false)  ${fmtMs(stream.p50)} (3 runs)`,
      `  decode                                 ${fmtMs(decode.p50, 3)} (p99 ${fmtMs(decode.p99, 3)})   = ${fmtRatio(decode.p50 / kernel.p50)} the kernel pass; ${decode.n - wrong}/${decode.n} decoded correctly`,
      `  reference: server kernel, one K=1 pass over the same lane: ${fmtMs(kernel.p50)} (p50 of ${kernel.n})`,
    ];
    if (wrong > 0) throw new Error(`client bench: ${wrong} of ${decode.n} decoded entries did not match the plaintext`);
    return { figures, lines };
  } finally {
    await handle.release();
  }
}
