// Prometheus metrics of a follow process (its own registry), served by a
// small HTTP listener (`lanepir follow --metrics-port`): GET /metrics.
import http from 'node:http';
import { type AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class FollowMetrics {
  readonly registry = new Registry();
  readonly headBlock = new Gauge({ name: 'lanepir_follow_head_block', help: "The node's head block number", registers: [this.registry] });
  readonly builtBlock = new Gauge({ name: 'lanepir_follow_built_block', help: 'The newest block built into a generation', registers: [this.registry] });
  readonly servedBlock = new Gauge({ name: 'lanepir_follow_served_block', help: 'The block of the generation the server last confirmed serving', registers: [this.registry] });
  readonly lagBlocks = new Gauge({ name: 'lanepir_follow_lag_blocks', help: 'Head block minus served block', registers: [this.registry] });
  readonly buildSeconds = new Histogram({ name: 'lanepir_follow_build_duration_seconds', help: 'Per block: building its generation', buckets: SECONDS, registers: [this.registry] });
  readonly ingestSeconds = new Histogram({ name: 'lanepir_follow_ingest_duration_seconds', help: "Per block: fetching its state changes from the node", buckets: SECONDS, registers: [this.registry] });
  readonly reloadSeconds = new Histogram({ name: 'lanepir_follow_reload_duration_seconds', help: 'Reload requests that succeeded', buckets: SECONDS, registers: [this.registry] });
  readonly blockToServedSeconds = new Histogram({ name: 'lanepir_follow_block_to_served_seconds', help: 'From first seeing a block to the server serving it', buckets: SECONDS, registers: [this.registry] });
  readonly blocks = new Counter({ name: 'lanepir_follow_blocks_total', help: 'Blocks built', registers: [this.registry] });
  readonly changes = new Counter({ name: 'lanepir_follow_changes_total', help: 'Keys changed (accounts and storage slots)', registers: [this.registry] });
  readonly reorgs = new Counter({ name: 'lanepir_follow_reorgs_total', help: 'Reorgs followed', registers: [this.registry] });
  readonly rpcErrors = new Counter({ name: 'lanepir_follow_rpc_errors_total', help: 'Failed steps by error code', labelNames: ['code'] as const, registers: [this.registry] });
  readonly reloadFailures = new Counter({ name: 'lanepir_follow_reload_failures_total', help: 'Reload requests that failed', registers: [this.registry] });
}

/** Serves GET /metrics (and /health) on host:port; resolves to the listener's URL. */
export async function serveFollowMetrics(metrics: FollowMetrics, host: string, port: number): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'Content-Type': 'application/json', Allow: 'GET, HEAD' }).end(JSON.stringify({ error: 'method not allowed', code: 'EMETHOD' }));
      return;
    }
    if (path === '/health') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'not found (GET /metrics)', code: 'ENOT_FOUND' }));
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: err.message, code: 'EMETRICS' })),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return { url: `http://${h}:${a.port}`, close: () => new Promise((r) => server.close(() => r())) };
}
