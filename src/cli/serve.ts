// lanepir serve: the cluster primary and its workers (--workers 1 too: one
// code path), until SIGTERM/SIGINT; SIGHUP reloads.
import { pino } from 'pino';
import { type ConfigInput, loadConfig } from '../config.js';
import { type PrimaryHandle, PrimaryError, runPrimary } from '../cluster/primary.js';
import { intOption, reportAndExit } from './errors.js';
import { PageAssets } from '../server/page.js';

export interface ServeFlags {
  data?: string;
  config?: string;
  host?: string;
  port?: string;
  adminHost?: string;
  adminPort?: string;
  adminToken?: string;
  adminTokenFile?: string;
  inMemory?: boolean;
  workers?: string;
  logLevel?: string;
}

export function configFromFlags(flags: ServeFlags) {
  const given: Partial<ConfigInput> = {
    data_dir: flags.data,
    host: flags.host,
    port: intOption('--port', flags.port),
    admin_host: flags.adminHost,
    admin_port: intOption('--admin-port', flags.adminPort),
    admin_token: flags.adminToken,
    admin_token_file: flags.adminTokenFile,
    use_mmap: flags.inMemory ? false : undefined,
    workers: intOption('--workers', flags.workers),
    log_level: flags.logLevel as ConfigInput['log_level'],
  };
  return loadConfig({ ...(flags.config ? { file: flags.config } : {}), env: process.env, flags: given });
}

export async function serveCommand(flags: ServeFlags): Promise<PrimaryHandle> {
  const config = configFromFlags(flags);
  // Every worker would fail the same way: say so once, before forking any.
  if (config.page) PageAssets.load();
  // Workers get the token over IPC (primary.ts); they must not inherit it through their environment.
  delete process.env.LANEPIR_ADMIN_TOKEN;
  const logger = pino({ level: config.log_level, base: { role: 'primary' } });
  if (flags.adminToken !== undefined) {
    logger.warn('--admin-token is readable by every local user (/proc/<pid>/cmdline, ps); use --admin-token-file or LANEPIR_ADMIN_TOKEN');
  }
  // Signals are handled from the start: one during start-up stops the workers
  // and removes the segment too. First signal: drain and exit 0. A second one
  // (an impatient operator, or a supervisor forwarding the signal again) must
  // not skip removing the segment (the primary does it on exit).
  const starting = new AbortController();
  let primary: PrimaryHandle | undefined;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: stopping without waiting for in-flight requests');
      primary?.forceStop();
      process.exit(1);
    }
    stopping = true;
    if (!primary) {
      logger.info({ signal }, 'stopping during start-up');
      starting.abort();
      return;
    }
    logger.info({ signal }, 'shutting down: draining in-flight requests');
    void primary.shutdown().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    primary?.reload().catch((err: Error) => logger.error({ err: err.message }, 'SIGHUP reload failed'));
  });
  try {
    primary = await runPrimary(config, logger, { signal: starting.signal });
  } catch (err) {
    // Stopped by a signal before it was ready: the asked-for outcome.
    if (err instanceof PrimaryError && err.code === 'ESTOPPED') process.exit(0);
    throw err;
  }
  // The primary gave up (no worker can run): it has stopped the workers and
  // removed the segment; exit non-zero so a supervisor restarts or alerts.
  primary.done.catch(reportAndExit);
  logger.info(
    { public: primary.publicUrl, admin: primary.adminUrl, data: config.data_dir, mmap: config.use_mmap, workers: config.workers, segment: primary.segment.name },
    'lanepir serving',
  );
  return primary;
}
