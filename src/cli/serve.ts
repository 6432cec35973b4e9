// lanepir serve: run the server until SIGTERM/SIGINT; SIGHUP reloads.
import { type ConfigInput, loadConfig } from '../config.js';
import { startServer, type RunningServer } from '../server/server.js';
import { intOption } from './errors.js';

export interface ServeFlags {
  data?: string;
  config?: string;
  host?: string;
  port?: string;
  adminHost?: string;
  adminPort?: string;
  adminToken?: string;
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
    use_mmap: flags.inMemory ? false : undefined,
    workers: intOption('--workers', flags.workers),
    log_level: flags.logLevel as ConfigInput['log_level'],
  };
  return loadConfig({ ...(flags.config ? { file: flags.config } : {}), env: process.env, flags: given });
}

/** Wires signals to a running server: TERM/INT drain and exit 0, HUP reloads. */
export function handleSignals(server: RunningServer): void {
  const stop = (signal: string) => {
    server.logger.info({ signal }, 'shutting down: draining in-flight requests');
    void server.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    server.reloadLocal().catch((err: Error) => server.logger.error({ err: err.message }, 'SIGHUP reload failed'));
  });
}

export async function serveCommand(flags: ServeFlags): Promise<RunningServer> {
  const config = configFromFlags(flags);
  const server = await startServer(config);
  handleSignals(server);
  server.logger.info({ public: server.publicUrl, admin: server.adminUrl, data: config.data_dir, mmap: config.use_mmap }, 'lanepir serving');
  return server;
}
