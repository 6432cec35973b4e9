// The command line as a newcomer meets it: every failure is one line naming
// the cause, with a non-zero exit (issue 8).
import test from 'ava';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import fs from 'node:fs';
import { pino } from 'pino';
import { Follower } from '../src/follow/follower.js';
import { cli, rmrf, tempDir } from './helpers.js';
import { buildBlock } from './server-helpers.js';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

test('reload and prune against an unreachable admin API print the cause (ECONNREFUSED host:port) and exit 1', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  fs.mkdirSync(path.join(data, 'generations')); // a data directory (prune checks that before asking the server)
  const port = await closedPort();
  for (const args of [['reload'], ['reload', '--generation', '5'], ['prune', '--data', data]]) {
    const r = await cli(...args, '--admin-url', `http://127.0.0.1:${port}`);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, new RegExp(`^lanepir: cannot reach the admin API at http://127\\.0\\.0\\.1:${port}/admin/\\w+: ECONNREFUSED 127\\.0\\.0\\.1:${port} \\[EADMIN_UNREACHABLE\\]\\n$`));
  }
  const bad = await cli('reload', '--admin-url', 'localhost:3001');
  t.is(bad.code, 1);
  t.regex(bad.stderr, /admin URL must be http:\/\/HOST:PORT .* got "localhost:3001"/);
});

test('follow mode logs the cause when the server cannot be reached', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  await buildBlock(data, 1, undefined, true);
  const updates = path.join(data, 'updates');
  fs.mkdirSync(updates);
  fs.writeFileSync(path.join(updates, '2.jsonl'), `${JSON.stringify({ lane: 'hot', index: 3, value: `0x${'ab'.repeat(32)}` })}\n`);
  const port = await closedPort();
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const follower = new Follower({ data, updatesDir: updates, admin: { url: `http://127.0.0.1:${port}`, token: undefined }, logger: pino({ level: 'info' }, sink), debounceMs: 10, pollMs: 50 });
  await follower.start();
  t.teardown(() => follower.stop());
  const deadline = Date.now() + 60_000;
  let refused: { err: string } | undefined;
  while (!refused && Date.now() < deadline) {
    refused = lines.map((l) => JSON.parse(l) as { msg: string; err: string }).find((l) => /reload failed/.test(l.msg));
    await new Promise((r) => setTimeout(r, 50));
  }
  t.truthy(refused, lines.join('\n'));
  t.regex(refused!.err, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
});

const COMMANDS = ['build', 'inspect', 'verify', 'selftest', 'serve', 'query', 'publish', 'reload', 'prune', 'follow'];

test('every subcommand has --help (exit 0); a wrong flag or a missing required one is one line and a pointer to the help, exit 2', async (t) => {
  const top = await cli('--help');
  t.is(top.code, 0);
  for (const cmd of COMMANDS) t.regex(top.stdout, new RegExp(`^  ${cmd} `, 'm'));
  await Promise.all(
    COMMANDS.map(async (cmd) => {
      const help = await cli(cmd, '--help');
      t.is(help.code, 0, cmd);
      t.regex(help.stdout, new RegExp(`^Usage: lanepir ${cmd} \\[options\\]`), cmd);
      const wrong = await cli(cmd, '--no-such-flag');
      t.is(wrong.code, 2, cmd);
      // commander reports a missing required flag before an unknown one for some commands: either is one line.
      t.regex(wrong.stderr, new RegExp(`^lanepir: (unknown option '--no-such-flag'|required option '[^']+' not specified)\\n\\(see: lanepir ${cmd} --help\\)\\n$`), cmd);
    }),
  );
  const missing = await cli('build', '--data', 'x');
  t.is(missing.code, 2);
  t.is(missing.stderr, `lanepir: required option '--block <n>' not specified\n(see: lanepir build --help)\n`);
  const typo = await cli('buld');
  t.is(typo.code, 2);
  t.regex(typo.stderr, /^lanepir: unknown command 'buld'\n\(Did you mean build\?\)\n\(see: lanepir --help\)\n$/);
});

test('flag values are checked before anything is read or written, with messages that name the flag', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  t.is((await cli('build', '--data', data, '--block', '1', '--hot-synthetic', '100', '--publish', '--quiet')).code, 0);
  const cases: [string[], number, RegExp][] = [
    [['build', '--data', data, '--block', '2', '--hot-synthetic', '100', '--m', '2000000'], 2, /^lanepir: --m: m = 2000000 exceeds 1048576 columns/],
    [['build', '--data', data, '--block', '2', '--hot-synthetic', '100', '--shard-size', '16'], 2, /^lanepir: --shard-size 16 is smaller than one entry \(--entry-size 32\)/],
    [['build', '--data', data, '--block', '1', '--hot-entries', path.join(data, 'missing.jsonl')], 1, /^lanepir: generation 1 already exists at .*immutable/],
    [['build', '--data', data, '--block', '2', '--from-generation', '9', '--hot-updates', 'x'], 1, /^lanepir: generation 9 \(--from-generation\) does not exist under /],
    [['inspect', '--data', data, '--generation', '9', '--lane', 'hot', '--index', '1'], 1, /^lanepir: generation 9 does not exist under /],
    [['inspect', '--data', data, '--generation', 'latest', '--lane', 'hot', '--index', '1'], 2, /^lanepir: --generation must be a generation id .*got "latest"/],
    [['inspect', '--data', path.join(data, 'nope'), '--lane', 'hot', '--index', 'x'], 2, /^lanepir: --index must be an integer >= 0, got "x"/],
    [['selftest', '--data', path.join(data, 'nope'), '--lane', 'hot', '--count', '0'], 2, /^lanepir: --count must be an integer >= 1, got "0"/],
    [['verify', '--data', data, '--generation', '9'], 1, /^lanepir: generation 9 does not exist under /],
    [['publish', '--data', data, '--generation', '../1'], 2, /^lanepir: --generation must be a generation id .*got "\.\.\/1"/],
    [['prune', '--data', data, '--retain', '0'], 2, /^lanepir: --retain must be an integer >= 1, got "0"/],
    // Flags of follow --rpc are refused with --updates-dir (not silently ignored); defaults do not count.
    [['follow', '--data', data, '--updates-dir', path.join(data, 'updates'), '--confirmations', '3'], 2, /^lanepir: --confirmations applies only to --rpc \(following an Ethereum node\), not to --updates-dir/],
    [
      ['follow', '--data', data, '--updates-dir', path.join(data, 'updates'), '--state', 's.jsonl', '--from-block', '5', '--metrics-port', '9100', '--rpc-batch', '10'],
      2,
      /^lanepir: --from-block, --state, --rpc-batch, --metrics-port apply only to --rpc/,
    ],
    [['follow', '--data', data, '--rpc', 'http://127.0.0.1:1', '--retain', '1'], 2, /^lanepir: --retain must be at least 2 with --rpc: .*one-block reorg/],
  ];
  for (const [args, code, message] of cases) {
    const r = await cli(...args);
    t.is(r.code, code, args.join(' '));
    t.regex(r.stderr, message, args.join(' '));
    t.is(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: one line\n${r.stderr}`);
  }
  t.deepEqual(fs.readdirSync(path.join(data, 'generations')), ['1']);
  t.false(fs.existsSync(path.join(data, 'updates')), 'a refused follow creates nothing');
});
