// Helpers for tests that run a real server on loopback ports chosen by the OS.
import fs from 'node:fs/promises';
import { type ConfigInput, loadConfig } from '../src/config.js';
import { PirClient } from '../src/pir/client.js';
import { buildGeneration } from '../src/store/builder.js';
import { SyntheticSource } from '../src/store/entries.js';
import { loadGeneration, readEntry } from '../src/store/generation.js';
import { generationDir, type LaneName } from '../src/store/layout.js';
import { pino, type Logger } from 'pino';
import { startServer, type RunningServer, type ServerOptions } from '../src/server/server.js';

export const HOT = { entries: 3000, m: 256 };
export const COLD = { entries: 20000, m: 2048 };
export const SHARD_SIZE = 16384;

/** Builds generation `block` with both lanes; later blocks keep the lanes' seeds and m. */
export async function buildBlock(data: string, block: number, seeds?: { hot: Buffer; cold: Buffer }, publish = false) {
  const r = await buildGeneration({
    data,
    block,
    shardSize: SHARD_SIZE,
    publish,
    lanes: {
      hot: { source: new SyntheticSource('hot', HOT.entries, 32, block), m: HOT.m, ...(seeds ? { seed: seeds.hot } : {}) },
      cold: { source: new SyntheticSource('cold', COLD.entries, 32, block), m: COLD.m, ...(seeds ? { seed: seeds.cold } : {}) },
    },
  });
  return { hot: Buffer.from(r.manifest.lanes.hot!.seed, 'hex'), cold: Buffer.from(r.manifest.lanes.cold!.seed, 'hex') };
}

export async function serve(data: string, overrides: Partial<ConfigInput> = {}, opts: ServerOptions = {}): Promise<RunningServer> {
  const config = loadConfig({
    flags: { data_dir: data, host: '127.0.0.1', port: 0, admin_host: '127.0.0.1', admin_port: 0, log_level: 'silent', shard_size_bytes: SHARD_SIZE, ...overrides },
  });
  return startServer(config, opts);
}

/** A logger that keeps every line it writes (for tests of what reaches the log). */
export function capturingLogger(level = 'trace'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: pino({ level }, { write: (s: string) => void lines.push(s) }), lines };
}

export async function reload(server: RunningServer, generation?: number, token?: string) {
  const res = await fetch(`${server.adminUrl}/admin/reload`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: generation === undefined ? '' : JSON.stringify({ generation }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Per-generation PIR clients and plaintext, fetched over HTTP like a wallet would. */
export class TestWallet {
  private clients = new Map<string, PirClient>();

  constructor(
    readonly url: string,
    readonly data: string,
  ) {}

  async client(lane: LaneName, generation: string): Promise<PirClient> {
    const key = `${lane}/${generation}`;
    let c = this.clients.get(key);
    if (!c) {
      const crs = await (await fetch(`${this.url}/crs/${lane}?generation=${generation}`)).json();
      const hint = new Uint8Array(await (await fetch(`${this.url}/hint/${lane}?generation=${generation}`)).arrayBuffer());
      c = await PirClient.create(crs, hint);
      this.clients.set(key, c);
    }
    return c;
  }

  /** One private lookup pinned to `generation`; returns the decoded entry and the generation that answered. */
  async lookup(lane: LaneName, index: number, generation: string) {
    const client = await this.client(lane, generation);
    const { query, state } = await client.query(index);
    const res = await fetch(`${this.url}/query/${lane}?generation=${generation}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream' },
      body: query,
    });
    if (res.status !== 200) return { status: res.status, body: await res.text() };
    const answered = res.headers.get('X-Lanepir-Generation')!;
    const entry = client.decode(new Uint8Array(await res.arrayBuffer()), state);
    return { status: 200, generation: answered, entry: Buffer.from(entry) };
  }

  /** The plaintext entry of a generation, read from its shard files. */
  async plaintext(lane: LaneName, index: number, generation: string): Promise<Buffer> {
    const info = await loadGeneration(generationDir(this.data, generation));
    return readEntry(info.lanes[lane]!, index);
  }
}

export async function currentGeneration(url: string): Promise<string> {
  const info = (await (await fetch(`${url}/info`)).json()) as { generation: string };
  return info.generation;
}

export async function corrupt(file: string, how: 'truncate' | 'delete'): Promise<void> {
  if (how === 'truncate') await fs.truncate(file, 100);
  else await fs.rm(file);
}
