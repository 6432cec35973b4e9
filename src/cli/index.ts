// The lanepir command line. Each subcommand lives in its own module; this
// file only declares the options and routes errors to a clean exit.
import { Command } from 'commander';
import { createRequire } from 'node:module';
import { buildCommand } from './build.js';
import { reportAndExit } from './errors.js';
import { inspectCommand, selftestCommand, verifyCommand } from './inspect.js';
import { followCommand } from './follow.js';
import { publishCommand, pruneCommand, reloadCommand } from './ops.js';
import { queryCommand } from './query.js';
import { serveCommand } from './serve.js';
import { accountCommand, erc20Command, storageCommand } from './eth.js';

const pkg = createRequire(import.meta.url)('../../../package.json') as { version: string };

/** Wraps an async action so every failure becomes one stderr line and a non-zero exit. */
function run<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      reportAndExit(err);
    }
  };
}

export function program(): Command {
  const cli = new Command('lanepir')
    .description('Private information retrieval (SimplePIR) over two lanes of Ethereum state')
    .version(pkg.version)
    // After a usage error, one line pointing at the help (not 40 lines of it burying the error).
    .showHelpAfterError('(see: lanepir --help)');
  cli.configureOutput({ outputError: (str, write) => write(`lanepir: ${str.replace(/^error: /, '')}`) });
  cli.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

  cli
    .command('build')
    .description('write a new generation (immutable) under DIR/generations/BLOCK')
    .requiredOption('--data <dir>', 'data directory')
    .requiredOption('--block <n>', 'block number (the generation id)')
    .option('--hot-synthetic <count>', 'hot lane of COUNT deterministic synthetic entries')
    .option('--hot-entries <file>', 'hot lane from FILE: JSON Lines {"index": 5, "value": "0x..."} (entries not listed are zero) or binary (the entries back to back)')
    .option('--cold-synthetic <count>', 'cold lane of COUNT deterministic synthetic entries')
    .option('--cold-entries <file>', 'cold lane from FILE (as --hot-entries)')
    .option('--entry-size <bytes>', 'bytes per entry (default 32)')
    .option('--m <columns>', 'matrix width (default: the previous generation\'s when it suits the entry count, else 16384 or the entry count for smaller lanes)')
    .option('--shard-size <bytes>', 'shard file size, rounded down to a multiple of the entry size (default 131072)')
    .option('--from-generation <id>', 'build incrementally from generation ID: unchanged shards are hard links, the hint is updated (see --hot-updates)')
    .option('--hot-updates <file>', 'with --from-generation: changed hot entries, JSON Lines {"index": 5, "value": "0x..."} or binary records of u64 LE index + entry')
    .option('--cold-updates <file>', 'with --from-generation: changed cold entries (as --hot-updates)')
    .option('--state <file>', 'Ethereum state, JSON Lines of accounts {"address", "balance", "nonce", "code_size", "storage"}: keyword lanes hot and cold')
    .option('--state-diff <file>', 'with --from-generation: the accounts and slots that changed (same shape; "deleted": true removes an account, a zero slot value removes the slot)')
    .option('--eth-synthetic <accounts>', 'a synthetic Ethereum state of ACCOUNTS accounts (~3.8 keys each) with 13 tokens in a generated hot manifest; with --from-generation: its diff for this block')
    .option('--synthetic-seed <seed>', 'seed of --eth-synthetic (default lanepir-eth-synthetic)')
    .option('--synthetic-diff-keys <n>', 'keys a synthetic block diff changes (default 2000)')
    .option('--hot-manifest <file>', 'hot-contract manifest {"version": 1, "contracts": [...]}: their storage goes to the hot lane (default: none; with --from-generation: the parent\'s)')
    .option('--block-hash <hash>', 'the block\'s hash (0x + 64 hex), carried in the manifest and /info')
    .option('--chain-id <id>', 'the chain id, carried in the manifest and /info (kept by later generations)')
    .option('--threads <n>', 'threads for the hint kernel (default: all cores)')
    .option('--fresh-seed', 'do not keep the previous generation\'s seed and m (bumps params_version)')
    .option('--format <format>', 'jsonl or binary: the format of the entry and update files (default: detected from the content; a .jsonl/.ndjson/.json or .bin name must agree)')
    .option('--publish', 'point DIR/current at the new generation')
    .option('--quiet', 'no progress output')
    .action(run(buildCommand));

  cli
    .command('inspect')
    .description('print one entry in hex (plaintext, for operators)')
    .requiredOption('--data <dir>', 'data directory')
    .option('--generation <id>', 'generation (default: DIR/current)')
    .requiredOption('--lane <lane>', 'hot or cold')
    .requiredOption('--index <i>', 'entry index')
    .action(run(inspectCommand));

  cli
    .command('verify')
    .description('check a generation: sizes, parameters and the checksum of every file')
    .requiredOption('--data <dir>', 'data directory')
    .option('--generation <id>', 'generation (default: DIR/current)')
    .action(run(verifyCommand));

  cli
    .command('selftest')
    .description('run private round trips in-process against random indices and compare with the plaintext')
    .requiredOption('--data <dir>', 'data directory')
    .option('--generation <id>', 'generation (default: DIR/current)')
    .requiredOption('--lane <lane>', 'hot or cold')
    .option('--count <n>', 'round trips', '32')
    .option('--threads <n>', 'kernel threads')
    .option('--in-memory', 'read the lane into memory instead of mapping it')
    .action(run(selftestCommand));

  cli
    .command('serve')
    .description('serve the published generation over HTTP (public and admin listeners)')
    .option('--data <dir>', 'data directory (LANEPIR_DATA; default ./pir-data)')
    .option('--config <file>', 'JSON configuration file (flags > LANEPIR_* environment > file)')
    .option('--host <host>', 'public listener host (default 0.0.0.0)')
    .option('--port <port>', 'public listener port (default 3000)')
    .option('--admin-host <host>', 'admin listener host (default 127.0.0.1)')
    .option('--admin-port <port>', 'admin listener port (default 3001)')
    .option('--admin-token <token>', 'bearer token required on admin routes (visible in the process list: prefer --admin-token-file)')
    .option('--admin-token-file <file>', 'file holding the admin token (mode 600 or 640; LANEPIR_ADMIN_TOKEN_FILE)')
    .option('--in-memory', 'read lanes into memory instead of mapping them')
    .option('--workers <n>', 'worker processes (default: available parallelism)')
    .option('--log-level <level>', 'pino log level (default info)')
    .action(run(async (flags) => void (await serveCommand(flags))));

  cli
    .command('query')
    .description('privately retrieve one entry from a server (prints it in hex)')
    .requiredOption('--url <url>', 'server URL, e.g. http://127.0.0.1:3000')
    .requiredOption('--lane <lane>', 'hot or cold')
    .requiredOption('--index <i>', 'entry index')
    .option('--cache-dir <dir>', 'where crs and hints are cached (default ~/.cache/lanepir)')
    .action(run(queryCommand));

  const ethRead = (cmd: Command) =>
    cmd
      .requiredOption('--url <url>', 'server URL, e.g. http://127.0.0.1:3000')
      .option('--block <n>', 'fail unless the server serves this block')
      .option('--no-hide-lanes', 'query only the lanes the read needs (tells the server whether it is a hot-manifest token)')
      .option('--pad-to <k>', 'pad the round to a multiple of K keys')
      .option('--cache-dir <dir>', 'where crs and hints are cached (default ~/.cache/lanepir)')
      .option('--json', 'print the result as JSON');

  ethRead(cli.command('account').description('privately read an account: balance, nonce, code size').argument('<address>', 'account address (0x + 40 hex)')).action(
    run((address: string, flags) => accountCommand(address, flags)),
  );
  ethRead(
    cli
      .command('storage')
      .description('privately read a storage slot of a contract')
      .argument('<address>', 'contract address')
      .argument('<slot>', 'slot: 0x hex (up to 32 bytes) or decimal'),
  ).action(run((address: string, slot: string, flags) => storageCommand(address, slot, flags)));
  ethRead(
    cli
      .command('erc20')
      .description('privately read an ERC-20 balance (the balance slot from the server\'s hot manifest, or --slot)')
      .argument('<token>', 'token contract address')
      .argument('<holder>', 'holder address')
      .option('--slot <n>', 'the balance mapping\'s slot, for a token the manifest does not describe')
      .option('--layout <layout>', 'solidity (default) or vyper, with --slot'),
  ).action(run((token: string, holder: string, flags) => erc20Command(token, holder, flags)));

  cli
    .command('publish')
    .description('point DIR/current at generation N, atomically')
    .requiredOption('--data <dir>', 'data directory')
    .requiredOption('--generation <id>', 'generation to publish')
    .action(run(publishCommand));

  const admin = (cmd: Command) =>
    cmd
      .option('--admin-url <url>', 'admin API (LANEPIR_ADMIN_URL; default from the configuration: http://127.0.0.1:3001)')
      .option('--admin-token <token>', 'admin bearer token (LANEPIR_ADMIN_TOKEN; default from the configuration)')
      .option('--admin-token-file <file>', 'file holding the admin bearer token (LANEPIR_ADMIN_TOKEN_FILE)')
      .option('--config <file>', 'the server\'s JSON configuration, for the admin address and token');

  admin(
    cli
      .command('reload')
      .description('ask a running server to reload (DIR/current, or --generation N); fails when refused')
      .option('--generation <id>', 'generation to serve'),
  ).action(run(reloadCommand));

  admin(
    cli
      .command('prune')
      .description('delete generations that are not current, not among the newest --retain, and held by no worker')
      .requiredOption('--data <dir>', 'data directory')
      .option('--retain <n>', 'newest generations always kept', '5')
      .option('--dry-run', 'only print what would be removed'),
  ).action(run(pruneCommand));

  admin(
    cli
      .command('follow')
      .description('roll one generation per block into the server: from an Ethereum node (--rpc) or from a directory of per-block files (--updates-dir)')
      .requiredOption('--data <dir>', 'data directory (DIR/current is the starting point)')
      .option('--rpc <url>', 'Ethereum node JSON-RPC (http(s):// batched, or ws(s):// with newHeads)')
      .option('--updates-dir <dir>', 'where a block source drops <block>.jsonl files (write them via rename); Ethereum data: state diffs (as --state-diff)')
      .option('--confirmations <n>', '--rpc: serve only blocks N below the head (0 for a development chain; see docs/OPERATIONS.md for mainnet)', '0')
      .option('--hot-manifest <file>', '--rpc: hot-contract manifest for the first generation (and later ones: a change moves keys)')
      .option('--from-block <n>', '--rpc: the block --state is at (a new data directory starts there)')
      .option('--state <file>', '--rpc: state file (JSON Lines) at --from-block')
      .option('--change-source <name>', '--rpc: auto, prestate, statediff or structlog', 'auto')
      .option('--rpc-batch <n>', '--rpc: requests per JSON-RPC batch (1: no batching)', '100')
      .option('--rpc-timeout-ms <ms>', '--rpc: timeout of one request', '30000')
      .option('--rpc-max-response-mb <n>', '--rpc (http): largest answer read, in MiB (struct logs of big transactions are large)', '256')
      .option('--metrics-port <port>', 'serve Prometheus metrics of the follower on this port (GET /metrics)')
      .option('--metrics-host <host>', 'metrics listener host', '127.0.0.1')
      .option('--debounce-ms <ms>', 'quiet time before building a burst of blocks', '200')
      .option('--poll-ms <ms>', 'rescan (files) or head polling (--rpc) interval', '1000')
      .option('--retain <n>', 'generations of the served chain kept on disk besides those a server holds; other branches are pruned first (--rpc: at least 2; a reorg can go back retain - 1 blocks)', '32')
      .option('--log-level <level>', 'pino log level', 'info'),
  ).action(run(followCommand));

  for (const cmd of cli.commands) cmd.showHelpAfterError(`(see: lanepir ${cmd.name()} --help)`);
  return cli;
}

export async function main(argv: string[] = process.argv): Promise<void> {
  await program().parseAsync(argv);
}
