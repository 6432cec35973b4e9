// The server's configuration: one object, from a JSON file, then LANEPIR_*
// environment variables, then command-line flags (each overriding the one
// before), validated once at start-up with a message naming each bad field.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { readSecretFile } from './secret-file.js';
import { isLoopbackHost } from './server/admin-guard.js';
import { isAddressOrRange } from './server/client-address.js';

const port = z.coerce.number().int().min(0).max(65535);
const nonNegInt = z.coerce.number().int().min(0);
/** Addresses or CIDR ranges: a JSON array, or a comma-separated string (environment, flags). */
const addressList = z
  .union([z.array(z.string()), z.string().transform((v) => v.split(',').map((x) => x.trim()).filter((x) => x !== ''))])
  .superRefine((list, ctx) => {
    for (const entry of list) if (!isAddressOrRange(entry)) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(entry)} is not an IP address or CIDR range` });
  });
const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')]);

export const configSchema = z
  .object({
    /** Base data directory; generations under <data_dir>/generations, served one at <data_dir>/current. */
    data_dir: z.string().min(1).default('./pir-data'),
    /** Map shards (true) or read lanes into memory (false); lane_memory, when not auto, decides instead. */
    use_mmap: bool.default(true),
    /**
     * Where the kernel executor holds lane bytes: 'cache' (shard buffers in
     * huge-page memory shared across generations: only changed shards are
     * read per block), 'mmap' (the shard files mapped), 'memory' (each lane
     * read whole into one buffer per generation). 'auto': 'cache' where the
     * kernel gives anonymous memory transparent huge pages, else 'mmap'
     * ('memory' when use_mmap is false).
     */
    lane_memory: z.enum(['auto', 'cache', 'mmap', 'memory']).default('auto'),
    /** Expected shard size (rounded down to a multiple of entry_size); 0 = not checked. */
    shard_size_bytes: nonNegInt.default(128 * 1024),
    /** Expected lane shapes; 0 = not checked. A mismatch makes a generation invalid. */
    hot_entries: nonNegInt.default(0),
    cold_entries: nonNegInt.default(0),
    entry_size: nonNegInt.default(0),
    host: z.string().min(1).default('0.0.0.0'),
    port: port.default(3000),
    admin_host: z.string().min(1).default('127.0.0.1'),
    admin_port: port.default(3001),
    /** Bearer token the admin routes require when set. */
    admin_token: z.string().min(16, 'admin_token must be at least 16 characters').optional(),
    /** File holding the admin token (kept off the command line); see secret-file.ts for what is refused. */
    admin_token_file: z.string().min(1).optional(),
    /**
     * Host names (besides IP literals, localhost and admin_host) under which
     * the admin listener may be addressed; other Host headers are refused
     * (DNS rebinding). A list, or comma-separated in LANEPIR_ADMIN_ALLOWED_HOSTS.
     */
    admin_allowed_hosts: z
      .preprocess((v) => (typeof v === 'string' ? v.split(',').map((h) => h.trim()).filter(Boolean) : v), z.array(z.string().min(1)))
      .default([]),
    /**
     * Origins whose pages may query the public API (CORS): '*' for any, or
     * exact origins like https://wallet.example; [] (or "none") turns CORS
     * off. Never applies to admin routes. A list, or comma-separated in
     * LANEPIR_CORS_ORIGINS.
     */
    cors_origins: z
      .preprocess(
        (v) => (v === 'none' ? [] : typeof v === 'string' ? v.split(',').map((o) => o.trim()).filter(Boolean) : v),
        z.array(z.string().regex(/^(\*|https?:\/\/[^/\s*]+)$/, "an origin is '*' or scheme://host[:port] (no path, no trailing slash)")),
      )
      .default(['*']),
    /** Serve the private-lookup page (GET /, GET /assets/...) on the public listener. */
    page: bool.default(true),
    /** Also serve the admin routes on the public listener (requires admin_token). */
    public_admin: bool.default(false),
    /** Past generations that stay queryable besides the current one. */
    retain_generations: nonNegInt.max(64).default(4),
    /** Queries answered per pass over a lane (1..16). */
    batch_max: z.coerce.number().int().min(1).max(16).default(16),
    /**
     * How long an idle lane waits for more queries to join a pass. 0 (the
     * default): under load, queries that arrive during a pass join the next
     * one anyway; waiting only delays a lone query (measured: 1 ms cost one
     * connection 60% of its queries/s and did not raise them at 4-64).
     */
    batch_window_ms: z.coerce.number().min(0).max(1000).default(0),
    /** Queries per lane queued or in a pass, across all workers, before the server answers 503. */
    max_pending_per_lane: z.coerce.number().int().min(1).default(64),
    /** Kernel threads per pass; 0 = all cores (one executor scans each lane for every worker). */
    kernel_threads: nonNegInt.default(0),
    /** Query and answer areas per worker in the shared query exchange, MiB; 0 = sized from the lanes and max_pending_per_lane. */
    exchange_mib: nonNegInt.max(65536).default(0),
    /** Whole-request time limit, ms. */
    request_timeout_ms: z.coerce.number().int().min(100).default(30_000),
    /** Time to drain in-flight requests on shutdown, ms. */
    shutdown_timeout_ms: z.coerce.number().int().min(0).default(10_000),
    /** How long each worker may take to map and warm a generation during a cluster reload, ms. */
    prepare_timeout_ms: z.coerce.number().int().min(100).default(60_000),
    /** Time limit of each disk step of a reload (resolve, read manifest and crs, check files, map a lane), ms. */
    reload_step_timeout_ms: z.coerce.number().int().min(100).default(30_000),
    /** Time limit for checksumming a generation's new files before it is first served, ms. */
    validate_timeout_ms: z.coerce.number().int().min(100).default(600_000),
    /** Threads that checksum a new generation; 0 = half the cores. */
    validate_threads: nonNegInt.max(256).default(0),
    /** Worker processes (cluster mode); 0 = available parallelism. */
    workers: nonNegInt.default(0),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    // Abuse controls (src/server/limits.ts, src/server/deltas.ts; docs/OPERATIONS.md).
    /** Requests in progress per client address on the public port, cheap routes aside; more answer 429. 0 = no cap. */
    max_requests_per_client: nonNegInt.default(32),
    /** Requests in progress per expensive route on the public port; more answer 503. 0 = no cap. */
    max_concurrent_queries: nonNegInt.default(256),
    max_concurrent_hints: nonNegInt.default(128),
    max_concurrent_deltas: nonNegInt.default(128),
    /** Proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client; none by default. */
    trusted_proxies: addressList.default([]),
    /** A response whose connection takes no bytes for this long is abandoned (connection reset), ms; 0 = never. */
    send_idle_timeout_ms: nonNegInt.default(30_000),
    /** The longest a response may take, from the request to its last byte, ms; 0 = no limit. */
    send_timeout_ms: nonNegInt.default(300_000),
    /** Delta merges running at once per process (worker threads), and waiting for one; a request needing one more answers 503. */
    delta_max_concurrent: z.coerce.number().int().min(1).max(64).default(2),
    delta_max_queued: nonNegInt.default(32),
    /** Bytes of merged deltas (and refusals) each process keeps. */
    delta_cache_bytes: nonNegInt.default(32 * 2 ** 20),
  })
  .strict()
  .refine((c) => !c.public_admin || c.admin_token !== undefined, {
    message: 'public_admin needs admin_token: admin routes are never public without a token',
    path: ['public_admin'],
  })
  .refine((c) => isLoopbackHost(c.admin_host) || c.admin_token !== undefined, {
    message: 'an admin listener beyond loopback needs admin_token (or admin_token_file): anyone who reaches it could switch generations',
    path: ['admin_host'],
  })
  // Same port on overlapping addresses: the second listener could never open (0 = any free port).
  .refine((c) => c.port === 0 || c.port !== c.admin_port || (c.host !== c.admin_host && !isWildcard(c.host) && !isWildcard(c.admin_host)), {
    message: 'admin_port must differ from port: the public and admin listeners cannot share a port',
    path: ['admin_port'],
  });

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {
  readonly code = 'ECONFIG';
}

/** LANEPIR_<KEY> for each config key, plus LANEPIR_DATA and LANEPIR_IN_MEMORY. */
export function fromEnv(env: NodeJS.ProcessEnv): Partial<Record<keyof Config, string | boolean>> {
  const out: Partial<Record<keyof Config, string | boolean>> = {};
  for (const key of Object.keys(configSchema.shape) as (keyof Config)[]) {
    const v = env[`LANEPIR_${key.toUpperCase()}`];
    if (v !== undefined && v !== '') out[key] = v;
  }
  if (env.LANEPIR_DATA) out.data_dir = env.LANEPIR_DATA;
  if (env.LANEPIR_IN_MEMORY) out.use_mmap = !['1', 'true'].includes(env.LANEPIR_IN_MEMORY);
  return out;
}

/**
 * Merges file < environment < flags and validates. `flags` holds only the
 * options the user actually gave.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv; flags?: Partial<ConfigInput> } = {}): Config {
  let fileValues: Record<string, unknown> = {};
  if (opts.file) {
    let text: string;
    try {
      text = fs.readFileSync(opts.file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${opts.file}: ${(err as Error).message}`);
    }
    try {
      fileValues = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`config file ${opts.file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  const layers: Record<string, unknown>[] = [fileValues, fromEnv(opts.env ?? {}), stripUndefined(opts.flags ?? {})];
  const merged: Record<string, unknown> = Object.assign({}, ...layers);
  resolveAdminToken(layers, merged);
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(config)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const config = parsed.data;
  config.data_dir = path.resolve(config.data_dir);
  if (config.workers === 0) config.workers = os.availableParallelism();
  return config;
}

/**
 * admin_token and admin_token_file are one setting: the layer (file <
 * environment < flags) that gives either wins, so a token file named by a
 * flag overrides a token in the configuration file and the lower layer's
 * file is never read. One layer giving both is ambiguous and refused.
 */
function resolveAdminToken(layers: Record<string, unknown>[], merged: Record<string, unknown>): void {
  delete merged.admin_token;
  delete merged.admin_token_file;
  const layer = [...layers].reverse().find((l) => l.admin_token !== undefined || l.admin_token_file !== undefined);
  if (!layer) return;
  if (layer.admin_token !== undefined && layer.admin_token_file !== undefined) {
    throw new ConfigError('admin_token and admin_token_file are both given at the same level; give one');
  }
  if (layer.admin_token !== undefined) {
    merged.admin_token = layer.admin_token;
    return;
  }
  if (typeof layer.admin_token_file !== 'string' || layer.admin_token_file === '') throw new ConfigError('admin_token_file must be a path');
  try {
    merged.admin_token = readSecretFile(layer.admin_token_file);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  merged.admin_token_file = path.resolve(layer.admin_token_file);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A short stable hash of the configuration (secrets left out), for /info. */
export function configHash(config: Config): string {
  const { admin_token: _secret, admin_token_file: _where, ...rest } = config;
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b))));
  return crypto.createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}
