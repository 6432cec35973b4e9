// Follow mode: turns a directory of per-block update files into served
// generations. Each new file is built incrementally on top of its parent
// block's generation; after a burst the newest is published and reloaded
// once (debounced, always with a trailing reload); a file for a block at or
// below the head is a reorg and is rebuilt from the right ancestor under a
// fresh id; a bad file is refused with its line and serving goes on.
// Publishing, reloading (with retries while the server is away) and pruning
// are the Roller's, as for lanepir follow --rpc.
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type Logger } from 'pino';
import { writeJsonAtomic } from '../store/fsutil.js';
import { loadGeneration, resolveGeneration } from '../store/generation.js';
import { buildIncremental } from '../store/incremental.js';
import { type LaneName, generationBlock, generationDir } from '../store/layout.js';
import { chainOf, freeGenerationId } from './chain.js';
import { Roller, type RollerEvents } from './roller.js';
import { UPDATE_FILE, parseUpdates } from './updates.js';

export interface FollowOptions {
  data: string;
  updatesDir: string;
  admin: { url: string; token: string | undefined };
  logger: Logger;
  /** Quiet time after the last file event before building (a burst becomes one reload). */
  debounceMs?: number;
  /** Rescan interval, in case file events are lost (network filesystems). */
  pollMs?: number;
  /** Generations kept on disk besides those a server holds. */
  retain?: number;
  /**
   * Builds block `block` as generation `id` from `parent` and the block file's
   * text (default: index-lane update files, src/follow/updates.ts). Ethereum
   * state diffs plug in here (src/eth/follow.ts). Returns the keys changed.
   */
  buildBlock?: (args: { data: string; block: number; id: string; parent: string; text: string; file: string }) => Promise<{ changes: number }>;
}

interface State {
  /** Update file name -> sha256 of the content that was applied (or refused). */
  files: Record<string, string>;
  /** The newest generation built (published or not yet: a reload may have been refused). */
  head?: string;
}

export interface FollowerEvents {
  built: { generation: string; block: number; parent: string; ms: number; changes: number };
  reloaded: { generation: string; block: number; blockToServedMs: number; reload: unknown };
  refused: { file: string; error: string };
}

export class Follower extends EventEmitter {
  private head!: string;
  private state: State = { files: {} };
  private scanning: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private poller: NodeJS.Timeout | undefined;
  private watcher: fs.FSWatcher | undefined;
  private readonly roller: Roller;
  /** The missing block last reported as awaited (logged once). */
  private waitingFor: number | undefined;

  constructor(private readonly opts: FollowOptions) {
    super();
    this.roller = new Roller({ data: opts.data, admin: opts.admin, logger: opts.logger, retain: opts.retain ?? 32 });
    this.roller.on('reloaded', (e: RollerEvents['reloaded']) => this.onReloaded(e));
  }

  private get statePath(): string {
    return path.join(this.opts.data, 'follow-state.json');
  }

  async start(): Promise<void> {
    this.head = (await resolveGeneration(this.opts.data)).id;
    await fsp.mkdir(this.opts.updatesDir, { recursive: true });
    const saved = await fsp.readFile(this.statePath, 'utf8').then((t) => JSON.parse(t) as State, () => undefined);
    if (saved) {
      this.state = saved;
      // Resume from what was built last, even if it never got served (the scan rolls it in).
      if (saved.head && (await loadGeneration(generationDir(this.opts.data, saved.head)).then(() => true, () => false))) this.head = saved.head;
    } else {
      // First start: files for blocks the head already covers count as applied.
      const headBlock = generationBlock(this.head);
      for (const name of await this.updateFiles()) {
        if (Number(name.split('.')[0]) <= headBlock) this.state.files[name] = await this.hash(name);
      }
      await this.saveState();
    }
    this.watcher = fs.watch(this.opts.updatesDir, () => this.schedule());
    this.watcher.on('error', (err) => this.opts.logger.warn({ err: err.message }, 'watch failed; polling only'));
    this.poller = setInterval(() => this.schedule(), this.opts.pollMs ?? 1000);
    this.opts.logger.info({ head: this.head, updates: this.opts.updatesDir }, 'following');
    await this.roller.request(this.head); // a server that is up already serves it (a no-op), one that is not yet gets it when it is
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    if (this.poller) clearInterval(this.poller);
    if (this.timer) clearTimeout(this.timer);
    await this.scanning;
    await this.roller.stop();
  }

  /** Runs a scan after the debounce window; a scan requested during a scan runs right after it. */
  private schedule(delay = this.opts.debounceMs ?? 200): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.scanning) {
        this.again = true;
        return;
      }
      this.scanning = this.scan()
        .catch((err: Error) => this.opts.logger.error({ err: err.message }, 'follow scan failed'))
        .finally(() => {
          this.scanning = undefined;
          if (this.again) {
            this.again = false;
            this.schedule(0);
          }
        });
    }, delay);
  }

  private async updateFiles(): Promise<string[]> {
    const names = (await fsp.readdir(this.opts.updatesDir)).filter((n) => UPDATE_FILE.test(n));
    return names.sort((a, b) => Number(a.split('.')[0]) - Number(b.split('.')[0]));
  }

  private async hash(name: string): Promise<string> {
    return crypto.createHash('sha256').update(await fsp.readFile(path.join(this.opts.updatesDir, name))).digest('hex');
  }

  private async saveState(): Promise<void> {
    await writeJsonAtomic(this.statePath, this.state);
  }

  /** Builds every pending block in order, then publishes and reloads the newest once. */
  async scan(): Promise<void> {
    let builtAny = false;
    for (const name of await this.updateFiles()) {
      const file = path.join(this.opts.updatesDir, name);
      const bytes = await fsp.readFile(file).catch(() => undefined);
      if (bytes === undefined) continue;
      const sha = crypto.createHash('sha256').update(bytes).digest('hex');
      if (this.state.files[name] === sha) continue;
      const block = Number(name.split('.')[0]);
      this.roller.seen(block);
      const headBlock = generationBlock(this.head);
      if (block > headBlock + 1) {
        if (this.waitingFor !== headBlock + 1) {
          this.waitingFor = headBlock + 1;
          this.opts.logger.info({ block, waiting_for: headBlock + 1 }, 'waiting for the next block (its file has not arrived)');
        }
        break; // later blocks build on the missing one
      }
      const parent = block === headBlock + 1 ? this.head : (await chainOf(this.opts.data, this.head)).get(block - 1);
      try {
        if (!parent) throw new Error(`no generation of block ${block - 1} in the chain of ${this.head}: cannot rebuild block ${block}`);
        const id = await freeGenerationId(this.opts.data, block);
        const started = performance.now();
        let changes: number;
        if (this.opts.buildBlock) {
          ({ changes } = await this.opts.buildBlock({ data: this.opts.data, block, id, parent, text: Buffer.from(bytes).toString('utf8'), file: name }));
        } else {
          const parentInfo = await loadGeneration(generationDir(this.opts.data, parent));
          const entrySizes = Object.fromEntries(Object.values(parentInfo.lanes).map((l) => [l.lane, l.crs.entry_size])) as Partial<Record<LaneName, number>>;
          const updates = await parseUpdates(bytes, name, entrySizes);
          await buildIncremental({ data: this.opts.data, block, id, from: parent, updates });
          changes = Object.values(updates).reduce((n, m) => n + m.size, 0);
        }
        const ms = performance.now() - started;
        if (block <= headBlock) this.opts.logger.warn({ block, generation: id, parent, replaced_head: this.head }, 'reorg: rebuilt block from its ancestor');
        this.opts.logger.info({ block, generation: id, parent, changes, build_ms: Math.round(ms) }, 'built generation');
        this.emit('built', { generation: id, block, parent, ms, changes });
        this.head = id;
        this.state.head = id;
        builtAny = true;
      } catch (err) {
        const message = (err as Error).message;
        this.opts.logger.error({ file, err: message }, 'update file refused; serving continues on the last good generation');
        this.emit('refused', { file, error: message });
        this.state.files[name] = sha; // not retried until the file changes
        await this.saveState();
        break; // later blocks build on this one
      }
      this.state.files[name] = sha;
      await this.saveState();
    }
    // The roller publishes at once and reloads (retrying while the server is away); a newer head supersedes it.
    if (builtAny) await this.roller.request(this.head);
  }

  private onReloaded({ generation: id, block, reload, blockToServedMs = 0 }: RollerEvents['reloaded']): void {
    this.opts.logger.info({ generation: id, block, block_to_served_ms: blockToServedMs }, 'serving');
    this.emit('reloaded', { generation: id, block, blockToServedMs, reload });
  }
}
