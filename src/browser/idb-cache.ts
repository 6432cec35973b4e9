// The browser's hint cache: lane hints and their crs kept in IndexedDB
// between visits, so a returning wallet updates its hint by a delta instead
// of downloading it again. Nothing read back is trusted: RemoteLane uses a
// cached hint only if it hashes to its crs's hint_sha256 and that crs agrees
// with what the server publishes (src/pir/remote.ts). Records are per server
// (the namespace, normally the server's URL) and lane. A cache that cannot
// be opened or written never fails a lookup: it loads nothing and the hint
// is downloaded; the error is kept in `lastError`.
//
// Saves are written behind: save() returns at once and the newest hint of
// each lane is written in the background (a hint is megabytes; writing it
// took as long as applying the block's delta, on every block). A write cut
// short (the page closed) leaves the previous record, which is still a
// valid starting point for a delta.
import { type CachedHint, type HintCache } from '../pir/remote.js';

const DEFAULT_DB = 'lanepir-hints';
const STORE = 'hints';
const DB_VERSION = 1;

interface HintRecord extends CachedHint {
  savedAt: number;
}

export interface IndexedDbHintCacheOptions {
  /** Which server the hints are of: records of other servers are never read. Normally the server's URL. */
  namespace: string;
  /** Database name (default "lanepir-hints"). */
  dbName?: string;
  /** The IndexedDB factory (default globalThis.indexedDB; workers have it too). */
  indexedDB?: IDBFactory;
}

export class IndexedDbHintCache implements HintCache {
  private db: Promise<IDBDatabase> | undefined;
  /** Hints waiting to be written, newest per lane. */
  private readonly pending = new Map<string, HintRecord>();
  /** The background writer, while it runs. */
  private writing: Promise<void> | undefined;
  /** The last error opening, reading or writing the database (undefined when the last operation worked). */
  lastError: Error | undefined;
  /** Records written in this session (for reporting). */
  saves = 0;

  constructor(private readonly opts: IndexedDbHintCacheOptions) {
    if (typeof opts?.namespace !== 'string' || opts.namespace === '') throw new TypeError('IndexedDbHintCache needs a namespace (the server URL)');
  }

  /** Whether this environment has IndexedDB at all. */
  static available(factory: IDBFactory | undefined = globalThis.indexedDB): boolean {
    return typeof factory?.open === 'function';
  }

  private key(lane: string): string {
    return `${this.opts.namespace}\n${lane}`;
  }

  private open(): Promise<IDBDatabase> {
    this.db ??= new Promise<IDBDatabase>((resolve, reject) => {
      const factory = this.opts.indexedDB ?? globalThis.indexedDB;
      if (!IndexedDbHintCache.available(factory)) throw new Error('IndexedDB is not available here');
      const req = factory.open(this.opts.dbName ?? DEFAULT_DB, DB_VERSION);
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE);
      };
      req.onsuccess = () => {
        const db = req.result;
        // Another tab upgrading the schema: let it, and reopen next time.
        db.onversionchange = () => {
          db.close();
          this.db = undefined;
        };
        resolve(db);
      };
      req.onerror = () => reject(req.error ?? new Error('IndexedDB open failed'));
      req.onblocked = () => reject(new Error('IndexedDB open is blocked by another tab'));
    }).catch((err: unknown) => {
      this.db = undefined;
      throw err;
    });
    return this.db;
  }

  private async run<T>(mode: IDBTransactionMode, body: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await this.open();
    return new Promise<T>((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = body(tx.objectStore(STORE));
      let result: T;
      req.onsuccess = () => (result = req.result);
      // Resolved when the transaction commits: a write is durable (or failed) by then.
      tx.oncomplete = () => resolve(result);
      tx.onerror = () => reject(tx.error ?? req.error ?? new Error('IndexedDB transaction failed'));
      tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
    });
  }

  async load(lane: string): Promise<CachedHint | undefined> {
    const unwritten = this.pending.get(lane);
    if (unwritten) return { generation: unwritten.generation, crs: unwritten.crs, hint: unwritten.hint };
    try {
      const rec = (await this.run('readonly', (s) => s.get(this.key(lane)))) as Partial<HintRecord> | undefined;
      this.lastError = undefined;
      if (!rec || typeof rec.generation !== 'string' || !(rec.hint instanceof Uint8Array) || typeof rec.crs !== 'object' || rec.crs === null) return undefined;
      // Shape only: RemoteLane checks the crs and the hint's sha256 before any use.
      return { generation: rec.generation, crs: rec.crs, hint: rec.hint };
    } catch (err) {
      this.lastError = asError(err);
      return undefined;
    }
  }

  /** Queues `value` to be written (write-behind: returns before the write; flush() waits for it). */
  save(lane: string, value: CachedHint): Promise<void> {
    this.pending.set(lane, { generation: value.generation, crs: value.crs, hint: value.hint, savedAt: Date.now() });
    this.writing ??= this.drain().finally(() => (this.writing = undefined));
    return Promise.resolve();
  }

  /** Resolves when every queued hint has been written (or has failed: see lastError). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    for (;;) {
      const next = this.pending.entries().next();
      if (next.done) return;
      const [lane, rec] = next.value;
      try {
        await this.run('readwrite', (s) => s.put(rec, this.key(lane)));
        this.lastError = undefined;
        this.saves++;
      } catch (err) {
        // Quota, private browsing, a closed database: lookups go on without a cache.
        this.lastError = asError(err);
      }
      // A newer hint of this lane may have been queued meanwhile: only then is it written again.
      if (this.pending.get(lane) === rec) this.pending.delete(lane);
    }
  }

  /** Removes this server's record of `lane`, or of every lane. */
  async clear(lane?: string): Promise<void> {
    if (lane !== undefined) this.pending.delete(lane);
    else this.pending.clear();
    await this.flush();
    if (lane !== undefined) {
      await this.run('readwrite', (s) => s.delete(this.key(lane)));
      return;
    }
    const prefix = `${this.opts.namespace}\n`;
    // Keys are strings: every key with the prefix sorts between prefix and prefix + U+FFFF.
    await this.run('readwrite', (s) => s.delete(IDBKeyRange.bound(prefix, `${prefix}\uffff`)));
  }

  /** Closes the database (a later operation reopens it). */
  close(): void {
    const db = this.db;
    this.db = undefined;
    void db?.then((d) => d.close()).catch(() => undefined);
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
