// The kernel process: forked by the primary, it holds the lanes of every
// generation a worker may query — in huge-page shard buffers shared across
// generations (lane_memory cache), or mapped — and runs the kernel executor
// over the cluster's query exchange: one pass per lane answers the queries of
// every worker. It maps what the primary tells it to (x-prepare), forgets
// what no worker holds any more (x-hold), and takes queries once the primary
// says so (x-start). A crash here takes no worker down: the primary fails the
// queries that were in its pass and forks a new one, which maps the held
// generations again (only the shard files not cached... by a process that is
// gone: all of them) while the queued queries wait.
import { AggregatorRegistry } from 'prom-client';
import { pino } from 'pino';
import { type Config } from '../config.js';
import fs from 'node:fs';
import { type LaneHandle, type PassReport, exchange, native } from '../native.js';
import { laneMemoryMode } from '../server/lane-memory.js';
import { ServerMetrics } from '../server/metrics.js';
import { openLane } from '../store/generation.js';
import { Validator } from '../server/validator.js';
import { LANES } from '../store/layout.js';
import { type ExecutorMessage, type PrimaryToExecutor } from './messages.js';

export async function runExecutor(): Promise<void> {
  const config = JSON.parse(process.env.LANEPIR_CONFIG_JSON!) as Config;
  const logger = pino({ level: config.log_level, base: { role: 'executor' } });
  const metrics = new ServerMetrics({ reloads: false });
  new AggregatorRegistry(); // answers the primary's metric requests
  AggregatorRegistry.setRegistries([metrics.registry]);
  const send = (msg: ExecutorMessage) => process.send?.(msg);
  const mode = laneMemoryMode(config);

  const x = exchange.exchangeOpen(process.env.LANEPIR_EXCHANGE!);
  const onPass = (p: PassReport) => {
    metrics.batchSize.observe({ lane: p.lane }, p.batch);
    metrics.kernelBytes.inc({ lane: p.lane }, p.bytes);
    metrics.kernelSeconds.inc({ lane: p.lane }, p.seconds);
    if (p.seconds > 0) metrics.kernelGbps.set({ lane: p.lane }, p.bytes / p.seconds / 1e9);
  };
  const executor = new exchange.KernelExecutor(x, { batchMax: config.batch_max, windowMs: config.batch_window_ms, threads: config.kernel_threads }, onPass);

  const held = new Map<string, { handles: LaneHandle[]; token: number }>();
  const preparing = new Map<string, Promise<void>>();

  const validator = new Validator(config);
  const prepare = (id: string, dir: string, digest: string | undefined): Promise<void> => {
    if (held.has(id)) return Promise.resolve();
    let p = preparing.get(id);
    if (p) return p;
    p = (async () => {
      // The files must be the ones the primary hashed (confirmed by its digest), or are hashed here;
      // the lanes are then opened on exactly those inodes.
      const { info } = digest ? await validator.confirm(dir, [], digest) : await validator.validate(dir, []);
      if (info.id !== id) throw Object.assign(new Error(`${dir} holds generation ${info.id}, not ${id}`), { code: 'EMANIFEST' });
      const handles: LaneHandle[] = [];
      const lanes: { hot?: LaneHandle; cold?: LaneHandle } = {};
      try {
        for (const name of LANES) {
          const l = info.lanes[name];
          if (!l) continue;
          const h = await openLane(l, mode);
          handles.push(h);
          lanes[name] = h;
          if (mode === 'mmap') await h.warm(); // the other modes read the bytes in already
        }
      } catch (err) {
        await Promise.all(handles.map((h) => h.release()));
        throw err;
      }
      held.set(id, { handles, token: executor.setGeneration(id, lanes) });
    })().finally(() => preparing.delete(id));
    preparing.set(id, p);
    return p;
  };

  const release = (id: string) => {
    const h = held.get(id);
    if (!h) return;
    held.delete(id);
    executor.dropGeneration(id, h.token);
    for (const handle of h.handles) void handle.release();
    logger.info({ generation: id }, 'released generation');
  };

  let stopping = false;
  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    for (const id of [...held.keys()]) release(id);
    executor.stop();
    x.close();
    process.exit(0);
  };

  process.on('message', (raw: unknown) => {
    const msg = raw as PrimaryToExecutor;
    switch (msg?.t) {
      case 'x-prepare': {
        const started = performance.now();
        prepare(msg.generation, msg.dir, msg.digest).then(
          () => send({ t: 'x-prepared', id: msg.id, ok: true, ms: performance.now() - started }),
          (err: Error & { code?: string }) => {
            logger.error({ generation: msg.generation, err: err.message }, 'could not map a generation');
            send({ t: 'x-prepared', id: msg.id, ok: false, error: { status: 422, code: err.code ?? 'EPREPARE', message: err.message } });
          },
        );
        break;
      }
      case 'x-hold': {
        const keep = new Set(msg.generations);
        for (const id of [...held.keys()]) if (!keep.has(id)) release(id);
        break;
      }
      case 'x-start':
        executor.start();
        logger.info({ generations: [...held.keys()], lane_memory: mode }, 'executor serving');
        break;
      case 'x-state':
        send({ t: 'x-state', id: msg.id, generations: [...held.keys()], mappings: nativeMappings() });
        break;
      case 'shutdown':
        shutdown();
        break;
    }
  });
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  process.on('SIGHUP', () => {}); // the primary handles reloads
  // The primary's IPC channel closing means it is gone: never outlive it.
  process.once('disconnect', shutdown);
  send({ t: 'x-ready', epoch: executor.epoch, laneMemory: mode });
}

/** Lane memory of this process: lanes held, the shard cache, and how much of it the kernel backs with huge pages. */
function nativeMappings(): Record<string, unknown> {
  return { ...native.mappingStats(), anonHugePagesBytes: anonHugePagesBytes() };
}

/** AnonHugePages of this process (/proc/self/smaps_rollup), or null where unknown. */
export function anonHugePagesBytes(): number | null {
  try {
    const m = /^AnonHugePages:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
