// The storage-slot index of an Ethereum generation: which slots each
// contract has. The lanes cannot say (they hold hashed tags, not keys), and
// two things need it: moving a contract's storage between lanes when the hot
// manifest changes, and removing a deleted account's storage.
//
// Layout (docs/FORMAT.md, "The slot index"), under <generation>/eth/:
//   slots.json           {"format": "lanepir-eth-slots", "version": 1, "base": "slots/base-<id>.bin", "records": N, "logs": ["slots/log-<id>.bin", …]}
//   slots/base-<id>.bin  records address (20) ‖ slot (32), grouped by address, groups in ascending address order
//   slots/log-<id>.bin   one block's changes: flag (1: present, 0: absent) ‖ address ‖ slot, each key once
// A slot exists when the newest log that lists it says present, or when no
// log lists it and the base has it. Generations hard-link the base and the
// logs of their parent and add their own log; when the logs grow past
// MAX_LOGS or an eighth of the base, the builder merges them into a new base.
// Node only; nothing is ever written into an existing file.
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { fsyncDir, writeNewFile } from '../store/fsutil.js';
import { EthError } from './errors.js';
import { toHex } from './keys.js';

export const ETH_DIR = 'eth';
export const SLOT_INDEX_FILE = 'eth/slots.json';
const BASE_RECORD = 52;
const LOG_RECORD = 53;
export const MAX_LOGS = 64;

const metaSchema = z
  .object({
    format: z.literal('lanepir-eth-slots'),
    version: z.literal(1),
    base: z.string().regex(/^slots\/base-[0-9r]+\.bin$/),
    records: z.number().int().nonnegative(),
    logs: z.array(z.string().regex(/^slots\/log-[0-9r]+\.bin$/)),
  })
  .strict();
export type SlotIndexMeta = z.infer<typeof metaSchema>;

/** Files written into a generation, as the manifest lists them (path relative to the generation). */
export type FileList = Record<string, { size: number; sha256: string }>;

const rel = (p: string) => `${ETH_DIR}/${p}`;

/** Streams records into a new file, hashing as it goes. */
class FileWriter {
  private readonly hash = crypto.createHash('sha256');
  private size = 0;
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private constructor(
    private readonly fh: fsp.FileHandle,
    readonly file: string,
  ) {}

  static async create(file: string): Promise<FileWriter> {
    return new FileWriter(await fsp.open(file, 'wx'), file);
  }

  async write(buf: Uint8Array): Promise<void> {
    this.pending.push(Buffer.from(buf));
    this.pendingBytes += buf.byteLength;
    if (this.pendingBytes >= 1 << 22) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const chunk = Buffer.concat(this.pending, this.pendingBytes);
    this.pending.length = 0;
    this.pendingBytes = 0;
    this.hash.update(chunk);
    this.size += chunk.length;
    let done = 0;
    while (done < chunk.length) done += (await this.fh.write(chunk, done, chunk.length - done)).bytesWritten;
  }

  async close(): Promise<{ size: number; sha256: string }> {
    try {
      await this.flush();
      await this.fh.sync();
    } finally {
      await this.fh.close();
    }
    return { size: this.size, sha256: this.hash.digest('hex') };
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}

/**
 * Collects the storage slots of a full state (account by account, in any
 * order) and writes the base of a new slot index. Slots are spilled to a
 * scratch file, so memory holds only one small record per account with
 * storage.
 */
export class SlotIndexWriter {
  private readonly groups: { address: Buffer; offset: number; count: number }[] = [];
  private offset = 0;
  private records = 0;
  private constructor(private readonly spill: FileWriter) {}

  /** `scratch`: a file path the writer may create (and removes in finish() or abort()). */
  static async create(scratch: string): Promise<SlotIndexWriter> {
    return new SlotIndexWriter(await FileWriter.create(scratch));
  }

  /** Storage slots collected so far. */
  get size(): number {
    return this.records;
  }

  /** The slots (32 bytes each) of one account; each account at most once. */
  async add(address: Uint8Array, slots: Uint8Array[]): Promise<void> {
    if (slots.length === 0) return;
    const buf = Buffer.alloc(slots.length * BASE_RECORD);
    slots.forEach((s, k) => {
      buf.set(address, k * BASE_RECORD);
      buf.set(s, k * BASE_RECORD + 20);
    });
    await this.spill.write(buf);
    this.groups.push({ address: Buffer.from(address), offset: this.offset, count: slots.length });
    this.offset += buf.length;
    this.records += slots.length;
  }

  /** Writes the index of generation `id` into `genDir` (base, meta); removes the scratch file; returns the files for the manifest. */
  async finish(genDir: string, id: string): Promise<FileList> {
    await this.spill.close();
    await fsp.mkdir(path.join(genDir, ETH_DIR, 'slots'), { recursive: true });
    const files: FileList = {};
    this.groups.sort((a, b) => Buffer.compare(a.address, b.address));
    const baseRel = `slots/base-${id}.bin`;
    const out = await FileWriter.create(path.join(genDir, ETH_DIR, baseRel));
    const fh = await fsp.open(this.spill.file, 'r');
    try {
      for (const g of this.groups) {
        const buf = Buffer.alloc(g.count * BASE_RECORD);
        await readFully(fh, buf, g.offset);
        await out.write(buf);
      }
      files[rel(baseRel)] = await out.close();
    } catch (err) {
      await out.abort();
      throw err;
    } finally {
      await fh.close();
    }
    await fsp.rm(this.spill.file);
    Object.assign(files, await writeMeta(genDir, { format: 'lanepir-eth-slots', version: 1, base: baseRel, records: this.records, logs: [] }));
    await fsyncDir(path.join(genDir, ETH_DIR, 'slots'));
    return files;
  }

  async abort(): Promise<void> {
    await this.spill.abort();
    await fsp.rm(this.spill.file, { force: true });
  }
}

async function writeMeta(genDir: string, meta: SlotIndexMeta): Promise<FileList> {
  const bytes = Buffer.from(JSON.stringify(meta, null, 2) + '\n');
  const sha256 = await writeNewFile(path.join(genDir, SLOT_INDEX_FILE), bytes);
  await fsyncDir(path.join(genDir, ETH_DIR));
  return { [SLOT_INDEX_FILE]: { size: bytes.length, sha256 } };
}

async function readFully(fh: fsp.FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new EthError('ESLOT_INDEX', 'slot index file ended early');
    done += bytesRead;
  }
}

/** A slot's change in one block: present (written non-zero) or absent (cleared). */
export interface SlotChange {
  address: Uint8Array;
  slot: Uint8Array;
  present: boolean;
}

/** Reads a generation's slot index: the base by binary search, the logs from memory. */
export class SlotIndex {
  /** address hex -> slot hex -> present, newest log last applied. */
  private readonly overlay = new Map<string, Map<string, boolean>>();
  private logBytes = 0;

  private constructor(
    readonly dir: string,
    readonly meta: SlotIndexMeta,
    private readonly baseRecords: number,
  ) {}

  static async open(genDir: string): Promise<SlotIndex> {
    const metaPath = path.join(genDir, SLOT_INDEX_FILE);
    let meta: SlotIndexMeta;
    try {
      const text = await fsp.readFile(metaPath, 'utf8');
      meta = metaSchema.parse(JSON.parse(text));
    } catch (err) {
      throw new EthError('ESLOT_INDEX', `cannot read the slot index ${metaPath}: ${(err as Error).message}`);
    }
    const baseSize = (await fsp.stat(path.join(genDir, ETH_DIR, meta.base))).size;
    if (baseSize !== meta.records * BASE_RECORD) throw new EthError('ESLOT_INDEX', `${meta.base} has ${baseSize} bytes, expected ${meta.records * BASE_RECORD}`);
    const index = new SlotIndex(genDir, meta, meta.records);
    for (const log of meta.logs) {
      const bytes = await fsp.readFile(path.join(genDir, ETH_DIR, log));
      if (bytes.length % LOG_RECORD !== 0) throw new EthError('ESLOT_INDEX', `${log} is not a whole number of records`);
      index.logBytes += bytes.length;
      for (let off = 0; off < bytes.length; off += LOG_RECORD) {
        const a = toHex(bytes.subarray(off + 1, off + 21));
        let m = index.overlay.get(a);
        if (!m) index.overlay.set(a, (m = new Map()));
        m.set(toHex(bytes.subarray(off + 21, off + 53)), bytes[off] === 1);
      }
    }
    return index;
  }

  private basePath(): string {
    return path.join(this.dir, ETH_DIR, this.meta.base);
  }

  /** The base's slots of `address` (binary search over the sorted groups). */
  private async baseSlots(address: Uint8Array): Promise<Uint8Array[]> {
    if (this.baseRecords === 0) return [];
    const fh = await fsp.open(this.basePath(), 'r');
    try {
      const a = Buffer.from(address);
      const probe = Buffer.alloc(20);
      let lo = 0;
      let hi = this.baseRecords;
      while (lo < hi) {
        const mid = Math.floor((lo + hi) / 2);
        await readFully(fh, probe, mid * BASE_RECORD);
        if (Buffer.compare(probe, a) < 0) lo = mid + 1;
        else hi = mid;
      }
      const out: Uint8Array[] = [];
      const CHUNK = 4096;
      for (let r = lo; r < this.baseRecords; r += CHUNK) {
        const n = Math.min(CHUNK, this.baseRecords - r);
        const buf = Buffer.alloc(n * BASE_RECORD);
        await readFully(fh, buf, r * BASE_RECORD);
        for (let k = 0; k < n; k++) {
          const rec = buf.subarray(k * BASE_RECORD, (k + 1) * BASE_RECORD);
          if (Buffer.compare(rec.subarray(0, 20), a) !== 0) return out;
          out.push(new Uint8Array(rec.subarray(20)));
        }
      }
      return out;
    } finally {
      await fh.close();
    }
  }

  /** The storage slots `address` has (32 bytes each; unordered). */
  async slotsOf(address: Uint8Array): Promise<Uint8Array[]> {
    const base = await this.baseSlots(address);
    const over = this.overlay.get(toHex(address));
    if (!over) return base;
    const out = base.filter((s) => over.get(toHex(s)) === undefined);
    for (const [slot, present] of over) if (present) out.push(Buffer.from(slot, 'hex'));
    return out;
  }

  /**
   * Writes the index of a child generation `id` into `genDir`: the parent's
   * base and logs as hard links plus a log of `changes`, or a merged new base
   * when the logs have grown too large. `parentFiles` are the parent's
   * manifest entries (linked files keep their checksums).
   */
  async writeChild(genDir: string, id: string, changes: SlotChange[], parentFiles: FileList): Promise<FileList> {
    const files: FileList = {};
    await fsp.mkdir(path.join(genDir, ETH_DIR, 'slots'), { recursive: true });
    const link = async (relPath: string) => {
      const entry = parentFiles[rel(relPath)];
      if (!entry) throw new EthError('ESLOT_INDEX', `the parent generation does not list ${rel(relPath)}`);
      await fsp.link(path.join(this.dir, ETH_DIR, relPath), path.join(genDir, ETH_DIR, relPath));
      files[rel(relPath)] = entry;
    };
    // Each key once per log, the last change winning.
    const byKey = new Map<string, SlotChange>();
    for (const c of changes) byKey.set(toHex(c.address) + toHex(c.slot), c);
    const log = Buffer.alloc(byKey.size * LOG_RECORD);
    let off = 0;
    for (const c of byKey.values()) {
      log[off] = c.present ? 1 : 0;
      log.set(c.address, off + 1);
      log.set(c.slot, off + 21);
      off += LOG_RECORD;
    }
    const logs = [...this.meta.logs];
    const compact = logs.length + 1 > MAX_LOGS || this.logBytes + log.length > Math.max(1 << 20, (this.baseRecords * BASE_RECORD) / 8);
    if (compact) {
      // Apply the new log to the overlay, then merge everything into a new base.
      for (const c of byKey.values()) {
        const a = toHex(c.address);
        let m = this.overlay.get(a);
        if (!m) this.overlay.set(a, (m = new Map()));
        m.set(toHex(c.slot), c.present);
      }
      const baseRel = `slots/base-${id}.bin`;
      const { file, records } = await this.merge(path.join(genDir, ETH_DIR, baseRel));
      files[rel(baseRel)] = file;
      Object.assign(files, await writeMeta(genDir, { format: 'lanepir-eth-slots', version: 1, base: baseRel, records, logs: [] }));
    } else {
      await link(this.meta.base);
      for (const l of logs) await link(l);
      if (log.length > 0) {
        const logRel = `slots/log-${id}.bin`;
        files[rel(logRel)] = { size: log.length, sha256: await writeNewFile(path.join(genDir, ETH_DIR, logRel), log) };
        logs.push(logRel);
      }
      Object.assign(files, await writeMeta(genDir, { format: 'lanepir-eth-slots', version: 1, base: this.meta.base, records: this.baseRecords, logs }));
    }
    await fsyncDir(path.join(genDir, ETH_DIR, 'slots'));
    return files;
  }

  /** The base with every log applied, written to `file`. */
  private async merge(file: string): Promise<{ file: { size: number; sha256: string }; records: number }> {
    const out = await FileWriter.create(file);
    const pendingAddrs = [...this.overlay.keys()].sort();
    let p = 0;
    let records = 0;
    const writeOverlayGroup = async (addrHex: string, skipSlots?: Set<string>) => {
      const address = Buffer.from(addrHex, 'hex');
      for (const [slot, present] of this.overlay.get(addrHex)!) {
        if (!present || skipSlots?.has(slot)) continue;
        const rec = Buffer.alloc(BASE_RECORD);
        address.copy(rec, 0);
        Buffer.from(slot, 'hex').copy(rec, 20);
        await out.write(rec);
        records++;
      }
    };
    try {
      const input = fs.createReadStream(this.basePath(), { highWaterMark: BASE_RECORD * 20_000 });
      let carry = Buffer.alloc(0);
      let current: string | undefined;
      let currentOver: Map<string, boolean> | undefined;
      const endGroup = async () => {
        if (current !== undefined && currentOver) await writeOverlayGroup(current);
        current = undefined;
        currentOver = undefined;
      };
      for await (const chunk of input) {
        const buf = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
        const whole = buf.length - (buf.length % BASE_RECORD);
        const keep: Buffer[] = [];
        for (let off = 0; off < whole; off += BASE_RECORD) {
          const rec = buf.subarray(off, off + BASE_RECORD);
          const addr = rec.subarray(0, 20).toString('hex');
          if (addr !== current) {
            if (keep.length) await out.write(Buffer.concat(keep.splice(0)));
            await endGroup();
            // Overlay-only addresses that sort before this one.
            while (p < pendingAddrs.length && pendingAddrs[p]! < addr) {
              await writeOverlayGroup(pendingAddrs[p]!);
              p++;
            }
            current = addr;
            currentOver = this.overlay.get(addr);
            if (currentOver && pendingAddrs[p] === addr) p++;
          }
          if (currentOver) {
            const state = currentOver.get(rec.subarray(20).toString('hex'));
            if (state !== undefined) continue; // the overlay decides (written at the group's end when present)
          }
          keep.push(Buffer.from(rec));
          records++;
        }
        if (keep.length) await out.write(Buffer.concat(keep));
        carry = Buffer.from(buf.subarray(whole));
      }
      if (carry.length) throw new EthError('ESLOT_INDEX', `${this.meta.base} is not a whole number of records`);
      await endGroup();
      while (p < pendingAddrs.length) await writeOverlayGroup(pendingAddrs[p++]!);
      return { file: await out.close(), records };
    } catch (err) {
      await out.abort();
      throw err;
    }
  }
}
