// The query exchange and the kernel executor in one process: queries from
// several regions (workers) batched into one pass answer exactly as the
// kernel does on its own; cancellation, dead regions, unknown generations,
// bad descriptors, and the area allocator.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type KernelClient, type LaneHandle, type PassReport, type QueryExchange, exchange, native } from '../src/native.js';
import { AreaAllocator, KernelError, KernelQueue, OverloadedError } from '../src/server/scheduler.js';

const dirs: string[] = [];
test.after.always(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

const ES = 32;
const M = 512;

async function lane(entries: number, shardEntries: number, mode: 'mmap' | 'cache' = 'cache'): Promise<LaneHandle> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lanepir-exchange-'));
  dirs.push(dir);
  const shards: string[] = [];
  for (let e = 0, i = 0; e < entries; e += shardEntries, i++) {
    const f = path.join(dir, `shard-${i}.bin`);
    fs.writeFileSync(f, crypto.randomBytes(Math.min(shardEntries, entries - e) * ES));
    shards.push(f);
  }
  return native.openLane({ shards, entrySize: ES, entries, shardSize: shardEntries * ES, m: M, mode });
}

const randomQuery = (m = M) => new Uint32Array(crypto.randomBytes(m * 4).buffer);

/** A client of region `region` whose completions resolve promises by descriptor. */
function client(x: QueryExchange, region: number) {
  const waiting = new Map<number, (r: { result: number; batch: number }) => void>();
  const c: KernelClient = new exchange.KernelClient(x, region, (w) => {
    for (let i = 0; i < w.length; i += 4) waiting.get(w[i]!)?.({ result: w[i + 1]!, batch: w[i + 2]! });
  });
  c.ref();
  return {
    c,
    /** Writes q into the area at `off`, submits it, resolves with the answer words (copied) and the pass size. */
    ask(d: number, laneIndex: number, gen: string, q: Uint32Array, off: number, answerBytes: number) {
      c.data.set(new Uint8Array(q.buffer, q.byteOffset, q.byteLength), off);
      const done = new Promise<{ result: number; batch: number }>((r) => waiting.set(d, r)).then((r) => ({
        ...r,
        answer: new Uint32Array(c.data.slice(off + q.byteLength, off + q.byteLength + answerBytes).buffer),
      }));
      c.submit(d, laneIndex, gen, off, q.byteLength, off + q.byteLength, answerBytes);
      return done;
    },
  };
}

test('queries from two regions are answered in one pass, exactly as the kernel answers them', async (t) => {
  const hot = await lane(5000, 700);
  const cold = await lane(20000, 3000, 'mmap');
  const x = exchange.exchangeCreate(null, 2, 16, 4 << 20);
  const passes: PassReport[] = [];
  const ex = new exchange.KernelExecutor(x, { batchMax: 16, windowMs: 300, threads: 3 }, (p) => passes.push(p));
  ex.setGeneration('5', { hot, cold });
  ex.start();
  const a = client(x, 0);
  const b = client(x, 1);
  t.teardown(() => {
    a.c.close();
    b.c.close();
    ex.stop();
  });
  const hotAnswer = hot.entrySize * hot.rows * 4, coldAnswer = cold.entrySize * cold.rows * 4;
  const qs = Array.from({ length: 6 }, () => randomQuery());
  const slot = (k: number, answerBytes: number) => k * (M * 4 + answerBytes + 64);
  // Three queries per region on the hot lane (one pass: the window holds the lane for company), one per region on cold.
  const results = await Promise.all([
    ...qs.slice(0, 3).map((q, k) => a.ask(k, 0, '5', q, slot(k, hotAnswer), hotAnswer)),
    ...qs.slice(3, 6).map((q, k) => b.ask(k, 0, '5', q, slot(k, hotAnswer), hotAnswer)),
    a.ask(3, 1, '5', qs[0]!, slot(3, hotAnswer), coldAnswer),
    b.ask(3, 1, '5', qs[1]!, slot(3, hotAnswer), coldAnswer),
  ]);
  const directHot = await hot.answer(qs);
  const directCold = await cold.answer([qs[0]!, qs[1]!]);
  for (let k = 0; k < 6; k++) {
    t.is(results[k]!.result, 0);
    t.deepEqual(results[k]!.answer, directHot[k], `hot query ${k} (region ${k < 3 ? 0 : 1})`);
  }
  t.deepEqual(results[6]!.answer, directCold[0], 'cold, region 0');
  t.deepEqual(results[7]!.answer, directCold[1], 'cold, region 1');
  // Pass reports reach JS on their own (after the answers, possibly).
  for (let i = 0; i < 100 && passes.reduce((n, p) => n + p.batch, 0) < 8; i++) await new Promise((r) => setTimeout(r, 20));
  const hotPasses = passes.filter((p) => p.lane === 'hot');
  t.is(hotPasses.reduce((n, p) => n + p.batch, 0), 6);
  t.true(hotPasses.some((p) => p.batch > 1), `batched across regions: ${JSON.stringify(hotPasses.map((p) => p.batch))}`);
  const s = x.stats();
  t.is(s.lanes[0]!.answered, 6);
  t.is(s.lanes[1]!.answered, 2);
  t.deepEqual(s.regions.map((r) => r.inKernel), [[0, 0], [0, 0]]);
  for (let d = 0; d < 4; d++) {
    a.c.free(d);
    b.c.free(d);
  }
  await Promise.all([hot.release(), cold.release()]);
});

test('unknown generations and wrong shapes fail that query only; a reset region drops its queued queries', async (t) => {
  const hot = await lane(3000, 1000);
  const x = exchange.exchangeCreate(null, 2, 8, 1 << 20);
  const ex = new exchange.KernelExecutor(x, { batchMax: 16, windowMs: 0, threads: 2 });
  ex.setGeneration('1', { hot });
  const a = client(x, 0);
  const b = client(x, 1);
  t.teardown(() => {
    a.c.close();
    b.c.close();
    ex.stop();
  });
  const answerBytes = hot.entrySize * hot.rows * 4;
  // Queued before the executor takes anything: region 1 is reset (its worker died) before start().
  const dropped = b.ask(0, 0, '1', randomQuery(), 0, answerBytes);
  t.is(b.c.pending(0), 1);
  x.resetRegion(1);
  t.is(x.stats().regions[1]!.inKernel[0], 0);
  ex.start();
  const [ok, gone, wrongSize, coldMissing] = await Promise.all([
    a.ask(0, 0, '1', randomQuery(), 0, answerBytes),
    a.ask(1, 0, '2', randomQuery(), 1 << 17, answerBytes),
    a.ask(2, 0, '1', randomQuery(M - 1), 2 << 17, answerBytes),
    a.ask(4, 1, '1', randomQuery(), 4 << 17, answerBytes),
  ]);
  t.is(ok.result, 0);
  t.is(gone.result, 1, 'EGENERATION_GONE');
  t.is(wrongSize.result, 2, 'EQUERY_SIZE');
  t.is(coldMissing.result, 1, 'a lane the generation does not have');
  // The dropped query never reached a pass.
  const raced = await Promise.race([dropped.then(() => 'answered'), new Promise((r) => setTimeout(() => r('dropped'), 200))]);
  t.is(raced, 'dropped');
  t.is(x.stats().lanes[0]!.answered, 1);
  await hot.release();
});

test('a descriptor whose areas lie outside the data area is refused (EBAD_DESCRIPTOR)', async (t) => {
  const hot = await lane(1000, 1000);
  const x = exchange.exchangeCreate(null, 1, 4, 64 << 10);
  const ex = new exchange.KernelExecutor(x, { windowMs: 0, threads: 1 });
  ex.setGeneration('1', { hot });
  ex.start();
  const results: number[] = [];
  let got: () => void = () => {};
  const done = new Promise<void>((r) => (got = r));
  const c = new exchange.KernelClient(x, 0, (w) => {
    for (let i = 0; i < w.length; i += 4) results.push(w[i + 1]!);
    if (results.length === 2) got();
  });
  c.ref();
  t.teardown(() => {
    c.close();
    ex.stop();
  });
  const answerBytes = hot.entrySize * hot.rows * 4;
  c.submit(0, 0, '1', 0, M * 4, (64 << 10) - answerBytes + 4, answerBytes); // runs 4 bytes past the end
  c.submit(1, 0, '1', 0, M * 4, 100, answerBytes); // overlaps its own query area
  await done;
  t.deepEqual(results, [5, 5]);
  await hot.release();
});

test('after a switch, queries on the newest query\'s generation do not wait behind a pass of older ones (issue 12)', async (t) => {
  const oldLane = await lane(4000, 1000);
  const newLane = await lane(4000, 1000);
  const x = exchange.exchangeCreate(null, 1, 8, 1 << 20);
  const passes: PassReport[] = [];
  const ex = new exchange.KernelExecutor(x, { batchMax: 16, windowMs: 0, threads: 1 }, (p) => passes.push(p));
  ex.setGeneration('1', { hot: oldLane });
  ex.setGeneration('2', { hot: newLane });
  const a = client(x, 0);
  t.teardown(() => {
    a.c.close();
    ex.stop();
  });
  const ab = oldLane.entrySize * oldLane.rows * 4;
  const slot = (k: number) => k * (M * 4 + ab + 64);
  const qs = Array.from({ length: 3 }, () => randomQuery());
  // Queued before the executor starts: two queries pinned to the old generation, then one to the new.
  const done = [a.ask(0, 0, '1', qs[0]!, slot(0), ab), a.ask(1, 0, '1', qs[1]!, slot(1), ab)];
  await new Promise((r) => setTimeout(r, 2));
  done.push(a.ask(2, 0, '2', qs[2]!, slot(2), ab));
  ex.start();
  const results = await Promise.all(done);
  for (let i = 0; i < 100 && passes.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(passes.map((p) => [p.generation, p.batch]), [['2', 1], ['1', 2]], 'the new generation first, then the old one (all of it)');
  // Each answered on the generation it was pinned to.
  const [o, n] = [await oldLane.answer([qs[0]!, qs[1]!]), await newLane.answer([qs[2]!])];
  t.deepEqual(results.map((r) => r.answer), [o[0], o[1], n[0]]);
  for (let d = 0; d < 3; d++) a.c.free(d);
  await Promise.all([oldLane.release(), newLane.release()]);
});

test('KernelQueue: bounded per lane across regions, areas reused, a queued query withdrawn when its request goes', async (t) => {
  const hot = await lane(4000, 1000);
  const x = exchange.exchangeCreate(null, 2, 8, 1 << 20);
  const ex = new exchange.KernelExecutor(x, { batchMax: 16, windowMs: 1000, threads: 2 });
  ex.setGeneration('9', { hot });
  let queueA: KernelQueue | undefined, queueB: KernelQueue | undefined;
  const ca = new exchange.KernelClient(x, 0, (w) => queueA!.onComplete(w));
  const cb = new exchange.KernelClient(x, 1, (w) => queueB!.onComplete(w));
  queueA = new KernelQueue(ca, { maxPending: 3 });
  queueB = new KernelQueue(cb, { maxPending: 3 });
  t.teardown(() => {
    queueA!.close();
    queueB!.close();
    ex.stop();
  });
  const qb = M * 4, ab = hot.entrySize * hot.rows * 4;
  const jobs = [queueA.open('hot', '9', qb, ab), queueA.open('hot', '9', qb, ab), queueB.open('hot', '9', qb, ab)];
  const qs = jobs.map(() => randomQuery());
  jobs.forEach((j, k) => j.query.set(new Uint8Array(qs[k]!.buffer)));
  const runs = jobs.map((j) => j.run());
  // Three queued (the executor is not started): the fourth is refused, on either worker.
  t.is(queueA.pending('hot'), 3);
  t.throws(() => queueB!.open('hot', '9', qb, ab), { instanceOf: OverloadedError });
  // Its client goes away: the queued query is withdrawn and its slot is free again.
  jobs[1]!.dispose();
  await t.throwsAsync(runs[1]!, { instanceOf: KernelError, message: /withdrawn/ });
  t.is(queueA.pending('hot'), 2);
  ex.start();
  const [r0, , r2] = await Promise.allSettled(runs);
  const direct = await hot.answer([qs[0]!, qs[2]!]);
  t.deepEqual(new Uint32Array(new Uint8Array((r0 as PromiseFulfilledResult<{ answer: Buffer }>).value.answer).buffer), direct[0]);
  t.deepEqual(new Uint32Array(new Uint8Array((r2 as PromiseFulfilledResult<{ answer: Buffer }>).value.answer).buffer), direct[1]);
  t.is((r0 as PromiseFulfilledResult<{ batch: number }>).value.batch, 2, 'one pass for both workers');
  jobs[0]!.dispose();
  jobs[2]!.dispose();
  t.deepEqual(queueA.usage(), { usedBytes: 0, sizeBytes: 1 << 20, descriptorsInUse: 0 });
  t.deepEqual(queueB.usage(), { usedBytes: 0, sizeBytes: 1 << 20, descriptorsInUse: 0 });
  // Areas that do not fit are refused (503), not overrun.
  t.throws(() => queueA!.open('hot', '9', 2 << 20, ab), { instanceOf: OverloadedError });
  await hot.release();
});

test('KernelQueue: a request that goes away during its pass settles when the pass ends, and its areas are freed then', async (t) => {
  // A slow pass: a large lane on the portable path, one thread.
  const big = await lane(1 << 21, 1 << 15, 'cache');
  const x = exchange.exchangeCreate(null, 1, 8, 1 << 20);
  const ex = new exchange.KernelExecutor(x, { windowMs: 0, threads: 1, path: 'portable' });
  ex.setGeneration('3', { hot: big });
  let queue: KernelQueue | undefined;
  const c = new exchange.KernelClient(x, 0, (w) => queue!.onComplete(w));
  queue = new KernelQueue(c, { maxPending: 8 });
  t.teardown(() => {
    queue!.close();
    ex.stop();
  });
  const qb = M * 4, ab = big.entrySize * big.rows * 4;
  const job = queue.open('hot', '3', qb, ab);
  job.query.set(new Uint8Array(randomQuery().buffer));
  ex.start();
  const run = job.run();
  for (let i = 0; i < 2000 && c.state(job.descriptor) !== 2; i++) await new Promise((r) => setTimeout(r, 1));
  t.is(c.state(job.descriptor), 2, 'in a pass');
  job.dispose(); // its client went away
  t.true(queue.usage().usedBytes > 0, 'the executor still writes its answer area');
  await t.throwsAsync(run, { instanceOf: KernelError, message: /went away/ });
  t.deepEqual(queue.usage(), { usedBytes: 0, sizeBytes: 1 << 20, descriptorsInUse: 0 });
  t.is(c.state(job.descriptor), 0);
  await big.release();
});

test('AreaAllocator: first fit, 64-byte aligned, neighbours merge on release', (t) => {
  const a = new AreaAllocator(1024);
  const x = a.alloc(100); // 128
  const y = a.alloc(64);
  const z = a.alloc(500); // 512
  t.deepEqual([x, y, z], [0, 128, 192]);
  t.is(a.alloc(400), -1);
  const w = a.alloc(320); // the rest
  t.is(w, 704);
  a.release(y, 64);
  t.is(a.alloc(65), -1, 'a 64-byte hole does not take 128');
  t.is(a.alloc(1), 128);
  a.release(128, 1);
  a.release(x, 100);
  t.is(a.alloc(192), 0, 'x and y merged');
  a.release(0, 192);
  a.release(w, 320);
  a.release(z, 500);
  t.is(a.usedBytes, 0);
  t.is(a.alloc(1024), 0, 'everything merged back');
  // Random alloc/free never hands out overlapping ranges.
  const b = new AreaAllocator(1 << 16);
  const live: [number, number][] = [];
  for (let i = 0; i < 2000; i++) {
    if (live.length && crypto.randomInt(3) === 0) {
      const [off, n] = live.splice(crypto.randomInt(live.length), 1)[0]!;
      b.release(off, n);
    } else {
      const n = 1 + crypto.randomInt(3000);
      const off = b.alloc(n);
      if (off < 0) continue;
      t.is(off % 64, 0);
      for (const [o, m] of live) if (off < o + m && o < off + n) t.fail(`overlap ${off}+${n} with ${o}+${m}`);
      live.push([off, n]);
    }
  }
  for (const [off, n] of live) b.release(off, n);
  t.is(b.usedBytes, 0);
});
