// A worker thread that merges diffs for GET /delta (DeltaService): reading
// and merging a chain takes tens of milliseconds per MB, which must not
// stall the event loop that answers every other request.
import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { type MergeWorkspace, mergeEncodedDeltas } from './delta-merge.js';

export interface MergeJob {
  /** The steps' files, oldest first, with the sizes the chain index recorded. */
  files: { id: string; file: string; bytes: number }[];
  maxBytes: number;
}

export type MergeReply = { ok: true; bytes: Uint8Array } | { ok: false; name: string; code: string; message: string; limit?: number };

/**
 * The steps are read into one buffer that this thread keeps and reuses (it
 * grows to the largest input seen, at most the input budget), and the output
 * is built in another (at most the hint): per merge, only the answer itself
 * is allocated (and handed to the main thread).
 */
let scratch = new Uint8Array(0);
const workspace: MergeWorkspace = { out: new Uint8Array(0) };

/** A regular file of the indexed size, read whole into `into` (O_NONBLOCK: a FIFO put in its place cannot hang the thread). */
function readStep(s: MergeJob['files'][number], into: Uint8Array): Uint8Array {
  let fd: number;
  try {
    fd = fs.openSync(s.file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch {
    throw Object.assign(new Error(`the diff of generation ${s.id} is gone`), { code: 'EDELTA_GONE' });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.size !== s.bytes) throw Object.assign(new Error(`the diff of generation ${s.id} was changed`), { code: 'EDELTA_GONE' });
    const buf = into.subarray(0, s.bytes);
    let off = 0;
    while (off < buf.length) {
      const n = fs.readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) throw Object.assign(new Error(`the diff of generation ${s.id} is shorter than indexed`), { code: 'EDELTA_GONE' });
      off += n;
    }
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

parentPort?.on('message', (job: MergeJob) => {
  let reply: MergeReply;
  try {
    const total = job.files.reduce((a, f) => a + f.bytes, 0);
    if (scratch.length < total) scratch = new Uint8Array(total);
    let at = 0;
    const steps = job.files.map((f) => {
      const step = readStep(f, scratch.subarray(at, at + f.bytes));
      at += f.bytes;
      return step;
    });
    reply = { ok: true, bytes: mergeEncodedDeltas(steps, job.maxBytes, workspace) };
  } catch (err) {
    const e = err as Error & { code?: string; limit?: number };
    reply = { ok: false, name: e.name, code: e.code ?? 'EINTERNAL', message: e.message, ...(e.limit !== undefined ? { limit: e.limit } : {}) };
  }
  parentPort!.postMessage(reply, reply.ok ? [reply.bytes.buffer as ArrayBuffer] : []);
});
