// A cluster worker: a full lanepir server whose queries are answered by the
// kernel process (through its region of the shared query exchange; it maps
// no lane memory) and whose reloads are orchestrated by the primary. It serves the generation published in the
// control segment, checks the segment's publish count on every request (so a
// lost message cannot leave it behind), and records what it holds in its slot.
import crypto from 'node:crypto';
import { pino } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { type Config } from '../config.js';
import { control } from '../native.js';
import { generationBlock } from '../store/layout.js';
import { HttpError } from '../server/errors.js';
import { ServerMetrics } from '../server/metrics.js';
import { ReloadError } from '../server/reloader.js';
import { type RunningServer, startServer } from '../server/server.js';
import { type ClusterReloadResult, type PrimaryMessage, type WorkerMessage, preciseNow } from './messages.js';

const SLOT_INTERVAL_MS = 200;

/**
 * Failpoints for tests of failure paths that cannot be provoked from outside
 * (LANEPIR_FAILPOINTS="prepare:slot=0" makes worker 0 fail every prepare).
 */
function failpointActive(name: string, slot: number): Error | undefined {
  for (const spec of (process.env.LANEPIR_FAILPOINTS ?? '').split(',')) {
    const [fp, arg] = spec.trim().split(':');
    if (fp === name && (arg === undefined || arg === `slot=${slot}`)) {
      return Object.assign(new Error(`failpoint ${spec.trim()} is set`), { code: 'EFAILPOINT' });
    }
  }
  return undefined;
}

/** A failpoint's argument ("held-list:2" -> "2"), if it is set. */
function failpointArg(name: string): string | undefined {
  for (const spec of (process.env.LANEPIR_FAILPOINTS ?? '').split(',')) {
    const [fp, arg] = spec.trim().split(':');
    if (fp === name) return arg ?? '';
  }
  return undefined;
}

/** Asks the primary for what is kept out of the environment. */
function fetchSecrets(): Promise<{ adminToken: string | null }> {
  return new Promise((resolve) => {
    const on = (msg: PrimaryMessage) => {
      if (msg?.t !== 'secrets') return;
      process.off('message', on);
      resolve(msg);
    };
    process.on('message', on);
    process.send?.({ t: 'secrets?' } satisfies WorkerMessage);
  });
}

/** The filesDigest the primary validated `generation` with (null: it has none, and this worker validates in full). */
function fetchDigest(generation: string): Promise<string | null> {
  return new Promise((resolve) => {
    const id = crypto.randomUUID();
    const on = (msg: PrimaryMessage) => {
      if (msg?.t !== 'digest' || msg.id !== id) return;
      process.off('message', on);
      resolve(msg.digest);
    };
    process.on('message', on);
    process.send?.({ t: 'digest?', id, generation } satisfies WorkerMessage);
  });
}

export async function runWorker(): Promise<void> {
  const { adminToken } = await fetchSecrets();
  const config = { ...(JSON.parse(process.env.LANEPIR_CONFIG_JSON!) as Config), ...(adminToken ? { admin_token: adminToken } : {}) };
  const slot = Number(process.env.LANEPIR_WORKER_SLOT);
  const heldListArg = failpointArg('held-list');
  const heldListMax = heldListArg === undefined ? undefined : Number(heldListArg);
  const segment = control.controlOpen(process.env.LANEPIR_SEGMENT!);
  const workerName = `worker-${slot}-${process.pid}`;
  const logger = pino({ level: config.log_level, base: { worker: workerName } });
  const metrics = new ServerMetrics({ reloads: false }); // the primary counts cluster reloads
  // Constructing one installs prom-client's answer to the primary's metric requests.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
  const send = (msg: WorkerMessage) => process.send?.(msg);

  // Requests to the primary, answered by id.
  const asks = new Map<string, (msg: PrimaryMessage) => void>();
  const ask = <T extends PrimaryMessage>(msg: (id: string) => WorkerMessage): Promise<T> =>
    new Promise((resolve) => {
      const id = crypto.randomUUID();
      asks.set(id, resolve as (m: PrimaryMessage) => void);
      send(msg(id));
    });

  let server: RunningServer | undefined;
  /** Prepares still running, and those among them the primary has aborted (by correlation id). */
  const preparing = new Set<string>();
  const aborted = new Set<string>();
  let requests = 0;
  let seenCount = segment.publishCount();
  /** The last switch: which generation, under which publish, when (answers the primary's publish-to-switch question). */
  let lastSwitch: { id: string; publishCount: number; at: number } | undefined;

  const writeSlot = () => {
    if (!server) return;
    const store = server.store;
    // Everything mapped here counts as held, so nothing it uses is pruned:
    // current first, then prepared, retained and draining ones.
    const byId = new Map<string, number>();
    for (const s of [...(store.current ? [store.current] : []), ...server.reloader.preparedSnapshots(), ...store.held()]) {
      byId.set(s.id, (byId.get(s.id) ?? 0) + s.inFlight);
    }
    const held = [...byId].map(([generation, inFlight]) => ({ generation, inFlight }));
    // The slot lists the first controlLayout.heldMax; heldTotal tells readers when that is not all.
    // (Test failpoint "held-list:N" lists fewer, to exercise the overflow path.)
    const listed = heldListMax === undefined ? held : held.slice(0, heldListMax);
    segment.writeSlot(slot, { pid: process.pid, serving: store.current?.id ?? null, requests, held: listed, heldTotal: held.length });
  };
  const noteSwitch = (id: string) => {
    lastSwitch = { id, publishCount: segment.publishCount(), at: preciseNow() };
    metrics.servedGeneration.set({ worker: workerName }, generationBlock(id));
    writeSlot();
  };

  /** Serve what the segment says is published, if this worker has it open. */
  const followSegment = () => {
    const count = segment.publishCount();
    if (count === seenCount || !server) return;
    seenCount = count;
    const published = segment.readPublished();
    if (!published || published.generation === null) return;
    const id = published.generation;
    if (server.store.current?.id === id) return;
    if (server.reloader.commit(id)) {
      noteSwitch(id);
      return;
    }
    // Not prepared here (this worker missed the prepare): map it now, keep serving meanwhile.
    logger.warn({ generation: id }, 'published generation was not prepared here; mapping it');
    server.reloader.reload(id).then(
      () => noteSwitch(id),
      (err: Error) => {
        seenCount = -1; // try again on a later request
        logger.error({ err: err.message, generation: id }, 'could not map the published generation');
      },
    );
  };

  const published = segment.readPublished();
  // The primary hashed the published generation: this worker confirms it sees the same files instead of hashing again.
  const initialDigest = published?.generation ? await fetchDigest(published.generation) : null;
  server = await startServer(config, {
    logger,
    workerName,
    metrics,
    // Queries go to the kernel process through this worker's region of the exchange; no lane is mapped here.
    exchange: { name: process.env.LANEPIR_EXCHANGE!, region: slot },
    // Map the published generation before accepting connections.
    initialGeneration: published?.generation ?? null,
    ...(initialDigest ? { initialDigest } : {}),
    beforeRequest: () => {
      requests++;
      followSegment();
    },
    reload: async (target, opts) => {
      const msg = await ask<Extract<PrimaryMessage, { t: 'reload-result' }>>((id) => {
        // The HTTP caller went away: tell the primary, which drops the reload if nobody else wants it.
        const abandon = () => send({ t: 'reload-abandon', id });
        if (opts?.signal?.aborted) queueMicrotask(abandon);
        else opts?.signal?.addEventListener('abort', abandon, { once: true });
        return { t: 'reload', id, ...(target !== undefined ? { target } : {}) };
      });
      if (msg.ok) return msg.result;
      const e = msg.error;
      if (e.status === 422) throw new ReloadError(e.code, e.message, e.extra);
      throw new HttpError(e.status, e.code, e.message, e.extra);
    },
    generations: async () => (await ask<Extract<PrimaryMessage, { t: 'generations-result' }>>((id) => ({ t: 'generations', id }))).data,
    metricsText: async () => {
      const m = await ask<Extract<PrimaryMessage, { t: 'metrics-result' }>>((id) => ({ t: 'metrics', id }));
      return { contentType: m.contentType, body: m.body };
    },
  });
  if (server.store.current) noteSwitch(server.store.current.id);
  const timer = setInterval(writeSlot, SLOT_INTERVAL_MS);
  timer.unref();

  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    await server!.close();
    server!.reloader.abortAll();
    writeSlot();
    segment.close();
    process.exit(0);
  };

  process.on('message', (raw: unknown) => {
    const msg = raw as PrimaryMessage;
    switch (msg?.t) {
      case 'reload-result':
      case 'generations-result':
      case 'metrics-result': {
        const resolve = asks.get(msg.id);
        asks.delete(msg.id);
        resolve?.(msg);
        break;
      }
      case 'prepare': {
        const started = performance.now();
        const failpoint = failpointActive('prepare', slot);
        preparing.add(msg.id);
        (failpoint ? Promise.reject(failpoint) : server!.reloader.prepare(msg.generation, msg.digest ? { digest: msg.digest } : {})).then(
          () => {
            preparing.delete(msg.id);
            // The primary gave up on this reload while it was being prepared: drop it.
            if (aborted.delete(msg.id)) server!.reloader.abort(msg.generation);
            else send({ t: 'prepared', id: msg.id, ok: true, ms: performance.now() - started });
            writeSlot(); // what it maps is held from now on, not from the next heartbeat
          },
          (err: Error & { code?: string }) => {
            preparing.delete(msg.id);
            aborted.delete(msg.id);
            send({ t: 'prepared', id: msg.id, ok: false, error: { status: 422, code: err.code ?? 'EPREPARE', message: err.message } });
          },
        );
        break;
      }
      case 'switch': {
        // Only ever switch to what is published now: a late message must not move the worker back.
        if (segment.readPublished()?.generation !== msg.generation) {
          send({ t: 'switched', id: msg.id, generation: msg.generation, ok: false, at: preciseNow(), error: 'superseded by a later publish' });
          followSegment();
          break;
        }
        seenCount = segment.publishCount();
        // A request may have noticed this publish first and switched already.
        const already = server!.store.current?.id === msg.generation && lastSwitch?.id === msg.generation && lastSwitch.publishCount === seenCount;
        const snap = already ? server!.store.current : server!.reloader.commit(msg.generation);
        if (snap && !already) noteSwitch(msg.generation);
        if (!snap) {
          // Not open here (the primary skips the prepare for a generation every worker lists, and this one
          // only had it draining): open it now, as for a publish noticed on a request.
          seenCount = -1;
          followSegment();
        }
        send({
          t: 'switched',
          id: msg.id,
          generation: msg.generation,
          ok: snap !== undefined,
          at: snap ? lastSwitch!.at : preciseNow(),
          ...(snap ? {} : { error: 'generation was not prepared' }),
        });
        break;
      }
      case 'abort':
        if (preparing.has(msg.id)) aborted.add(msg.id); // dropped when its prepare finishes
        server!.reloader.abort(msg.generation);
        break;
      case 'shutdown':
        void shutdown();
        break;
    }
  });
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  process.on('SIGHUP', () => {}); // the primary handles reloads
  send({ t: 'ready', slot, generation: server.store.current?.id ?? null, publicUrl: server.publicUrl, adminUrl: server.adminUrl });
}
