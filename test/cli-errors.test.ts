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
    refused = lines.map((l) => JSON.parse(l) as { msg: string; err: string }).find((l) => /reload refused/.test(l.msg));
    await new Promise((r) => setTimeout(r, 50));
  }
  t.truthy(refused, lines.join('\n'));
  t.regex(refused!.err, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
});
