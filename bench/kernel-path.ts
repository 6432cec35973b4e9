// One kernel path measured in a process of its own: the kernel bench runs
// this with LANEPIR_KERNEL_PATH (and LANEPIR_NO_VNNI) set, so that a path
// other than the machine's best — AVX2 as on AMD EPYC before Zen 4 — is
// measured on the same machine, lane files and memory mode. Prints one JSON
// object: K=1 one-thread GB/s (best of the runs) and the hint's seconds (best of two).
import crypto from 'node:crypto';
import fs from 'node:fs';
import { native, type LaneMemory } from '../src/native.js';


interface LaneArgs {
  shards: string[];
  entrySize: number;
  entries: number;
  shardSize: number;
  m: number;
}

interface Args {
  answer: LaneArgs;
  hint: LaneArgs;
  mode: LaneMemory;
  seconds: number;
  n: number;
}


const args = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as Args;
const features = native.cpuFeatures();
const lane = await native.openLane({ ...args.answer, mode: args.mode });
const q = [new Uint32Array(crypto.randomBytes(args.answer.m * 4).buffer)];
await lane.answer(q, { threads: 1 }); // warm-up
let best = Infinity;
const until = performance.now() + args.seconds * 1000;
for (let i = 0; i < 3 || (performance.now() < until && i < 200); i++) {
  const t0 = performance.now();
  await lane.answer(q, { threads: 1 });
  best = Math.min(best, (performance.now() - t0) / 1000);
}
const gbps = lane.bytes / best / 1e9;
await lane.release();
const h = await native.openLane({ ...args.hint, mode: args.mode });
// Best of two, as for the best path in the parent: one run can meet other load.
let hintSeconds = Infinity;
for (let i = 0; i < 2; i++) {
  const t0 = performance.now();
  await native.hint(h, crypto.randomBytes(16), args.n);
  hintSeconds = Math.min(hintSeconds, (performance.now() - t0) / 1000);
}
const hintBytes = h.bytes;
await h.release();
process.stdout.write(JSON.stringify({ path: features.default, avxvnni: features.avxvnni, avx512vnni: features.avx512vnni, gbps, hintSeconds, hintBytes }) + '\n');
