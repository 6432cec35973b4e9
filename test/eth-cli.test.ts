// The Ethereum command line: lanepir build --state / --state-diff / --eth-synthetic,
// lanepir account | storage | erc20 against a running server, and follow mode
// on an Ethereum data directory (state diffs per block, a bad one refused).
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { ethBlockBuilder } from '../src/eth/follow.js';
import { StateClient } from '../src/eth/client.js';
import { EthSynthetic } from '../src/eth/synthetic.js';
import { Follower, type FollowerEvents } from '../src/follow/follower.js';
import { generationsDir } from '../src/store/layout.js';
import { rmrf, tempDir } from './helpers.js';
import { serve } from './server-helpers.js';

const exec = promisify(execFile);
const BIN = path.resolve('bin/lanepir.js');
const run = (...args: string[]) => exec(process.execPath, [BIN, ...args]).then(
  (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
  (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
);

test('build from a state file, read it back with account, storage and erc20; clear errors and exit codes', async (t) => {
  const data = tempDir();
  const cache = tempDir('lanepir-cache-');
  t.teardown(() => {
    rmrf(data);
    rmrf(cache);
  });
  const token = '0x1111111111111111111111111111111111111111';
  const holder = '0x2222222222222222222222222222222222222222';
  const slot = '0x' + Buffer.from((await import('../src/eth/erc20.js')).erc20BalanceSlot(holder, 9, 'solidity')).toString('hex');
  const state = path.join(data, 'state.jsonl');
  fs.writeFileSync(
    state,
    [
      JSON.stringify({ block_number: 7, block_hash: `0x${'77'.repeat(32)}` }),
      JSON.stringify({ address: holder, balance: '1000000000000000000', nonce: 3 }),
      JSON.stringify({ address: token, balance: 0, nonce: 1, code_size: 1234, storage: { [slot]: '0x2a', '0x0': '0x1' } }),
    ].join('\n') + '\n',
  );
  const manifest = path.join(data, 'hot.json');
  fs.writeFileSync(manifest, JSON.stringify({ version: 1, contracts: [{ address: token, label: 'TOK', erc20: { balance_slot: 9, layout: 'solidity' } }] }));
  const built = await run('build', '--data', data, '--block', '7', '--state', state, '--hot-manifest', manifest, '--chain-id', '10', '--shard-size', '16384', '--publish', '--quiet');
  t.is(built.code, 0, built.stderr);
  t.regex(built.stdout, /built generation 7 .*2 accounts; hot: 2 keys.*cold: 2 keys/);
  const server = await serve(data);
  t.teardown(() => server.close());
  const url = server.publicUrl;
  const account = await run('account', '--url', url, '--cache-dir', cache, holder);
  t.is(account.code, 0, account.stderr);
  t.regex(account.stdout, /balance +1000000000000000000 wei \(1 ETH\)/);
  t.regex(account.stdout, /nonce +3/);
  t.regex(account.stdout, /exists +true/);
  t.regex(account.stdout, new RegExp(`block +7 \\(0x${'77'.repeat(32)}\\)`));
  t.regex(account.stderr, /private read from generation 7: hot \d+, cold \d+ queries/);
  const erc20 = await run('erc20', '--url', url, '--cache-dir', cache, '--json', token, holder);
  t.is(erc20.code, 0, erc20.stderr);
  t.like(JSON.parse(erc20.stdout), { kind: 'erc20', balance: '42', exists: true, slot });
  const storage = await run('storage', '--url', url, '--cache-dir', cache, token, '0');
  t.regex(storage.stdout, /value +0x0{63}1\n/);
  const missing = await run('account', '--url', url, '--cache-dir', cache, '0x3333333333333333333333333333333333333333');
  t.regex(missing.stdout, /balance +0 wei[\s\S]*exists +false/);

  // Errors: bad input (exit 2), unknown token and unreachable server (exit 1), each naming the cause.
  const bad = await run('account', '--url', url, '0x12');
  t.is(bad.code, 2);
  t.regex(bad.stderr, /ADDRESS must be 0x followed by 40 hex digits/);
  const notToken = await run('erc20', '--url', url, '--cache-dir', cache, holder, token);
  t.is(notToken.code, 1);
  t.regex(notToken.stderr, /not an ERC-20 token in the server's hot manifest.*\[ETOKEN\]/);
  const down = await run('account', '--url', 'http://127.0.0.1:4', holder);
  t.is(down.code, 1);
  t.regex(down.stderr, /ECONNREFUSED/);
  const badSlot = await run('storage', '--url', url, token, 'zz');
  t.is(badSlot.code, 2);

  // Incremental from a state diff; a bad diff publishes nothing.
  const diff = path.join(data, 'diff.jsonl');
  fs.writeFileSync(diff, JSON.stringify({ address: holder, nonce: 4 }) + '\n' + JSON.stringify({ address: token, storage: { [slot]: '0x0' } }) + '\n');
  const inc = await run('build', '--data', data, '--block', '8', '--from-generation', '7', '--state-diff', diff, '--publish', '--quiet');
  t.is(inc.code, 0, inc.stderr);
  fs.writeFileSync(diff, JSON.stringify({ address: holder, nonce: -4 }) + '\n');
  const refused = await run('build', '--data', data, '--block', '9', '--from-generation', '8', '--state-diff', diff, '--publish');
  t.is(refused.code, 1);
  t.regex(refused.stderr, /diff\.jsonl:1: .*nonce/);
  t.deepEqual(fs.readdirSync(generationsDir(data)).sort(), ['7', '8']);
  await server.reloadLocal();
  const after = await new StateClient({ url }).readMany([{ kind: 'account', address: holder }, { kind: 'erc20', token, holder }]);
  t.like(after[0], { nonce: 4n, balance: 10n ** 18n, block: { number: 8n, hash: null } });
  t.like(after[1], { balance: 0n, exists: false });
});

test('follow mode on an Ethereum data directory: state diffs per block are built and served; a bad file is refused', async (t) => {
  const data = tempDir();
  const updates = path.join(data, 'updates');
  t.teardown(() => rmrf(data));
  const syn = new EthSynthetic(400, 'follow-test');
  const built = await run('build', '--data', data, '--block', '1', '--eth-synthetic', '400', '--synthetic-seed', 'follow-test', '--chain-id', '1', '--shard-size', '16384', '--publish', '--quiet');
  t.is(built.code, 0, built.stderr);
  const server = await serve(data);
  t.teardown(() => server.close());
  const follower = new Follower({ data, updatesDir: updates, admin: { url: server.adminUrl, token: undefined }, logger: pino({ level: process.env.FOLLOW_LOG ?? 'silent' }), debounceMs: 20, pollMs: 100, buildBlock: ethBlockBuilder() });
  await follower.start();
  t.teardown(() => follower.stop());
  const wait = <K extends keyof FollowerEvents>(event: K, pred: (e: FollowerEvents[K]) => boolean) =>
    new Promise<FollowerEvents[K]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), 60_000);
      const on = (e: FollowerEvents[K]) => {
        if (!pred(e)) return;
        clearTimeout(timer);
        follower.off(event, on);
        resolve(e);
      };
      follower.on(event, on);
    });
  const drop = (block: number, text: string) => {
    const tmp = path.join(updates, `.${block}.tmp`);
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, path.join(updates, `${block}.jsonl`));
  };
  const lines = (block: number) =>
    syn
      .diff(block, { keys: 40 })
      .map((l) => JSON.stringify({ address: l.address, ...(l.deleted ? { deleted: true } : {}), ...(l.balance !== undefined ? { balance: `0x${l.balance.toString(16)}` } : {}), ...(l.nonce !== undefined ? { nonce: Number(l.nonce) } : {}), ...(l.codeSize !== undefined ? { code_size: l.codeSize } : {}), ...(l.storage.length ? { storage: Object.fromEntries(l.storage.map((s) => [`0x${Buffer.from(s.slot).toString('hex')}`, `0x${Buffer.from(s.value).toString('hex')}`])) } : {}) }))
      .join('\n') + '\n';
  const served = wait('reloaded', (e) => e.block === 3);
  drop(2, JSON.stringify({ block_number: 2, block_hash: `0x${'22'.repeat(32)}` }) + '\n' + lines(2));
  drop(3, lines(3));
  await served;
  const client = new StateClient({ url: server.publicUrl });
  const changed = syn.diff(3, { keys: 40 }).find((l) => !l.deleted && l.balance !== undefined && l.nonce !== undefined)!;
  const r = await client.getAccount(changed.address);
  t.like(r, { balance: changed.balance, nonce: changed.nonce, block: { number: 3n } });
  // Block 2's hash came from its file's first line (block 2 was built, then 3 served: a burst reloads the newest).
  t.is(JSON.parse(fs.readFileSync(path.join(generationsDir(data), '2', 'manifest.json'), 'utf8')).block_hash, `0x${'22'.repeat(32)}`);
  const refused = wait('refused', () => true);
  drop(4, `{"address": "0x${'44'.repeat(20)}", "balance": "0x1", "nonce": 1, "codeSize": 3}\n`);
  t.regex((await refused).error, /4\.jsonl:1: unknown key "codeSize"/);
  t.is((await client.getAccount(changed.address)).block.number, 3n, 'serving goes on at the last good block');
});
