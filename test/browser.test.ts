// The lookup page and the browser bundle in a real headless Chromium, against
// a server on an Ethereum (keyword-lane) data set: the rendered values equal
// the plaintext state (a present account, a token holder, a storage slot,
// an absent address); after a reload to the next block the next lookup
// updates its hints by deltas (no hint download) and shows the new values;
// a returning page takes its hints from IndexedDB; the page talks to no
// origin but the server; its main thread is never blocked over 50 ms during
// a lookup; and a page on another origin uses the bundle and its worker.
import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { type AddressInfo } from 'node:net';
import { getAddress } from 'viem';
import { buildEthDiff, buildEthState } from '../src/eth/build.js';
import { accountKey, toHex, wordToBigInt, wordToHex } from '../src/eth/keys.js';
import { EthSynthetic } from '../src/eth/synthetic.js';
import { decodeBasicData } from '../src/eth/values.js';
import { type RunningServer } from '../src/server/server.js';
import { type RecordedPage, type TestBrowser, blockingTasks, launchChromium, lookupSettled, recordedPage, testText, traceMainThread } from './browser-helpers.js';
import { EthModel } from './eth-helpers.js';
import { rmrf, tempDir } from './helpers.js';
import { reload, serve } from './server-helpers.js';

declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any

const BLOCK = 700;
const HASH = (b: number) => `0x${b.toString(16).padStart(64, 'b')}`;

interface Fixture {
  data: string;
  syn: EthSynthetic;
  model: EthModel;
  server: RunningServer;
  chromium: TestBrowser;
}

let fx: Fixture | undefined;
const cleanups: (() => Promise<void> | void)[] = [];

test.before(async () => {
  const data = tempDir();
  cleanups.push(() => rmrf(data));
  const syn = new EthSynthetic(1500, `browser-test-${crypto.randomBytes(4).toString('hex')}`);
  const model = new EthModel(syn.hotManifest);
  model.apply(syn.state(), 'state');
  await buildEthState({ data, block: BLOCK, state: syn.state(), hotManifest: syn.hotManifest, chainId: 31337, blockHash: HASH(BLOCK), shardSize: 16384, publish: true });
  const server = await serve(data);
  cleanups.push(() => server.close());
  // Started last: if Chromium cannot start, the test fails here with the reason (never a skip).
  const chromium = await launchChromium();
  cleanups.push(() => chromium.close());
  fx = { data, syn, model, server, chromium };
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

function fixture(): Fixture {
  if (!fx) throw new Error('the fixture did not start (see the before hook)');
  return fx;
}

/** What the page must show for `address` (the model's account, zero when absent). */
function expectedAccount(model: EthModel, address: string, block: number) {
  const v = model.values.get(toHex(accountKey(address)));
  const d = v ? decodeBasicData(v) : { balance: 0n, nonce: 0n };
  return { address: address.toLowerCase(), balance: d.balance.toString(), nonce: d.nonce.toString(), block_number: String(block), block_hash: HASH(block), exists: v !== undefined };
}

function parseResult(text: string) {
  const r = JSON.parse(text) as Record<string, unknown>;
  return { ...r, address: String(r.address).toLowerCase() };
}

/** Only the server's origin: the page, its assets, the worker and every private read. */
function foreignRequests(requests: string[], server: string): string[] {
  const origin = new URL(server).origin;
  return requests.filter((u) => !u.startsWith('data:') && new URL(u).origin !== origin);
}

/** Opens `path` on a fresh page, traced, and waits for the lookup; fails on long main-thread work. */
async function openLookup(t: import('ava').ExecutionContext, path: string): Promise<RecordedPage & { state: string; took: number }> {
  const { server, chromium } = fixture();
  const rp = await recordedPage(chromium.browser);
  const started = Date.now();
  const { result: state, tasks } = await traceMainThread(rp.page, async () => {
    await rp.page.goto(`${server.publicUrl}${path}`);
    return lookupSettled(rp.page);
  });
  const took = Date.now() - started;
  checkMainThread(t, await rp.longTasks(), tasks, path);
  return { ...rp, state, took };
}

function checkMainThread(t: import('ava').ExecutionContext, longTasks: { start: number; duration: number }[], tasks: Parameters<typeof blockingTasks>[1], what: string): void {
  const blocking = blockingTasks(longTasks, tasks, 50);
  t.log(`${what}: long tasks on the main thread (wall ms) [${longTasks.map((l) => Math.round(l.duration)).join(', ')}]; busiest task ${Math.round(Math.max(0, ...tasks.map((x) => x.cpu)))} ms CPU`);
  t.deepEqual(blocking, [], `${what}: the main thread was busy over 50 ms`);
}

function cost(text: string) {
  return JSON.parse(text) as { generation: string; queries: Record<string, number>; hint_sources: Record<string, string>; bytes_sent: number; bytes_received: number; hint_bytes: number; delta_bytes: number; timings_ms: Record<string, number> };
}

/**
 * The generation of each lane's hint in the page's IndexedDB (read from the
 * page, the way the worker stores them), waiting up to 30 s for `want`.
 */
async function cachedGenerations(page: import('puppeteer-core').Page, want: Record<string, string>): Promise<Record<string, string>> {
  let got: Record<string, string> = {};
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
    got = await page.evaluate(async () => {
      const idb = (globalThis as any).indexedDB; // eslint-disable-line @typescript-eslint/no-explicit-any
      // Opening a database that does not exist would create it without its store: look first.
      if (!(await idb.databases()).some((d: { name: string }) => d.name === 'lanepir-hints')) return {};
      return new Promise<Record<string, string>>((resolve, reject) => {
        const req = idb.open('lanepir-hints');
        req.onerror = () => reject(req.error);
        req.onsuccess = () => {
          const db = req.result;
          const out: Record<string, string> = {};
          const cursor = db.transaction('hints').objectStore('hints').openCursor();
          cursor.onerror = () => reject(cursor.error);
          cursor.onsuccess = () => {
            const c = cursor.result;
            if (!c) {
              db.close();
              resolve(out);
              return;
            }
            out[String(c.key).split('\n')[1]!] = c.value.generation;
            c.continue();
          };
        };
      });
    });
    if (Object.keys(want).length === Object.keys(got).length && Object.entries(want).every(([k, v]) => got[k] === v)) break;
  }
  return got;
}

/** A base account with a balance and a nonce. */
function richAccount(syn: EthSynthetic): string {
  for (let i = 0; i < syn.accounts; i++) {
    const a = syn.account(i);
    if (a.balance > 0n && a.nonce > 0n && !a.holds.some(Boolean)) return a.address;
  }
  throw new Error('no account with balance and nonce');
}

test.serial('the page reads a present account privately: values equal the state, every lane queried, nothing but the server contacted', async (t) => {
  const { syn, model, server } = fixture();
  const address = richAccount(syn);
  const p = await openLookup(t, `/?address=${address}`);
  t.is(p.state, 'done', await testText(p.page, 'error'));
  t.deepEqual(parseResult(await testText(p.page, 'result')), expectedAccount(model, address, BLOCK));
  const c = cost(await testText(p.page, 'cost'));
  // Lane hiding: both lanes get queries, the same number per key whatever the key's lane.
  t.deepEqual(Object.keys(c.queries).sort(), ['cold', 'hot']);
  t.true(c.queries.hot! > 0 && c.queries.cold! > 0);
  t.deepEqual(c.hint_sources, { hot: 'download', cold: 'download' });
  t.true(c.hint_bytes > 0 && c.bytes_sent > 0 && c.bytes_received > 0);
  for (const step of ['hint', 'query', 'network', 'decode']) t.true(typeof c.timings_ms[step] === 'number', step);
  t.deepEqual(foreignRequests(p.requests, server.publicUrl), []);
  t.deepEqual(await p.cspViolations(), [], 'nothing tried to reach another origin either (the CSP would have blocked it)');
  t.true(p.requests.some((u) => u.includes('/query/hot')) && p.requests.some((u) => u.includes('/query/cold')));
  t.deepEqual(p.errors, []);
  t.log(`first lookup (cold cache) ${p.took} ms: ${JSON.stringify(c.timings_ms)}`);
  await p.page.close();
});

test.serial('a token holder: every listed token balance, one token by the token field, and a storage slot, equal the state', async (t) => {
  const { syn, model, server } = fixture();
  const k = 0;
  const holder = syn.holderOf(k, 10).address;
  const p = await openLookup(t, `/?address=${holder}`);
  t.is(p.state, 'done', await testText(p.page, 'error'));
  t.deepEqual(parseResult(await testText(p.page, 'result')), expectedAccount(model, holder, BLOCK));
  const tokens = JSON.parse(await testText(p.page, 'tokens')) as { token: string; balance: string; exists: boolean }[];
  t.is(tokens.length, syn.tokens.length);
  let held = 0;
  for (const tk of tokens) {
    const v = model.values.get(toHex(model.manifest.erc20BalanceKey(tk.token, holder)));
    t.is(tk.balance, v ? wordToBigInt(v).toString() : '0', tk.token);
    t.is(tk.exists, v !== undefined, tk.token);
    if (v) held++;
  }
  t.true(held >= 1, 'the holder holds at least the token it was picked for');

  // The token field: that token only.
  const token = syn.tokens[k]!.address;
  await p.page.$eval('[data-testid="token"]', (e: { value: string }, v: string) => (e.value = v), token);
  await p.page.$eval('[data-testid="address"]', (e: { value: string }, v: string) => (e.value = v), holder);
  const before = p.requests.length;
  await p.page.click('[data-testid="submit"]');
  t.is(await lookupSettled(p.page), 'done', await testText(p.page, 'error'));
  const one = JSON.parse(await testText(p.page, 'tokens')) as { token: string; balance: string }[];
  t.is(one.length, 1);
  t.is(one[0]!.token.toLowerCase(), token.toLowerCase());
  t.is(one[0]!.balance, wordToBigInt(model.values.get(toHex(model.manifest.erc20BalanceKey(token, holder)))!).toString());
  t.false(p.requests.slice(before).some((u) => u.includes('/hint/')), 'the hints stay in memory');

  // A slot without a token: that slot of the address (a contract's storage, cold lane).
  const slotKey = [...model.values.keys()].find((key) => key.startsWith('01') && model.laneOf(key) === 'cold')!;
  const contract = `0x${slotKey.slice(2, 42)}`;
  const slot = `0x${slotKey.slice(42)}`;
  const s = await openLookup(t, `/?address=${contract}&slot=${slot}`);
  t.is(s.state, 'done', await testText(s.page, 'error'));
  const storage = JSON.parse(await testText(s.page, 'storage')) as { value: string; exists: boolean; slot: string };
  t.deepEqual({ value: storage.value, exists: storage.exists }, { value: wordToHex(model.values.get(slotKey)!), exists: true });
  t.deepEqual(foreignRequests([...p.requests, ...s.requests], server.publicUrl), []);
  await p.page.close();
  await s.page.close();
});

test.serial('an absent address reads as zero with exists false; a bad address is an error on the page', async (t) => {
  const { model } = fixture();
  const absent = getAddress(`0x${crypto.randomBytes(20).toString('hex')}`);
  const p = await openLookup(t, `/?address=${absent}`);
  t.is(p.state, 'done', await testText(p.page, 'error'));
  t.deepEqual(parseResult(await testText(p.page, 'result')), expectedAccount(model, absent, BLOCK));
  t.is(JSON.parse(await testText(p.page, 'result')).exists, false);
  await p.page.close();

  const bad = await openLookup(t, '/?address=0x1234');
  t.is(bad.state, 'error');
  t.regex(await testText(bad.page, 'error'), /address/i);
  t.is(await testText(bad.page, 'result'), '', 'nothing unchecked is shown');
  await bad.page.close();
});

test.serial('after a reload to the next block the next lookup updates the hints by deltas and shows the new values; a returning page uses IndexedDB', async (t) => {
  const { syn, model, server, data } = fixture();
  const address = richAccount(syn);
  const holder = syn.holderOf(1, 20).address;
  const token = syn.tokens[1]!.address;
  // A page holding the hints of BLOCK in memory.
  const p = await openLookup(t, `/?address=${address}`);
  t.is(p.state, 'done', await testText(p.page, 'error'));

  // Block BLOCK+1: the account's balance and nonce change, and the holder's token balance.
  const next = BLOCK + 1;
  const tokenKey = model.manifest.erc20BalanceKey(token, holder);
  const newTokenBalance = 123456789012345678901234567n;
  const diff = [
    JSON.stringify({ address, balance: '0xde0b6b3a7640000', nonce: '0x2a' }),
    JSON.stringify({ address: token, storage: { [wordToHex(tokenKey.subarray(21))]: `0x${newTokenBalance.toString(16)}` } }),
  ].join('\n');
  const diffFile = path.join(data, `${next}.jsonl`);
  fs.writeFileSync(diffFile, `${diff}\n`);
  await buildEthDiff({ data, from: String(BLOCK), block: next, diff: diffFile, blockHash: HASH(next), publish: true });
  const r = await reload(server);
  t.is(r.status, 200, JSON.stringify(r.body));

  const before = p.requests.length;
  // Long tasks of the page's first lookup were checked against its own trace: only later ones count here.
  const earlierLongTasks = (await p.longTasks()).length;
  await p.page.$eval('[data-testid="address"]', (e: { value: string }, v: string) => (e.value = v), address);
  const { result: state, tasks } = await traceMainThread(p.page, async () => {
    await p.page.click('[data-testid="submit"]');
    return lookupSettled(p.page);
  });
  t.is(state, 'done', await testText(p.page, 'error'));
  checkMainThread(t, (await p.longTasks()).slice(earlierLongTasks), tasks, 'lookup after the reload');
  t.deepEqual(parseResult(await testText(p.page, 'result')), {
    address: address.toLowerCase(),
    balance: '1000000000000000000',
    nonce: '42',
    block_number: String(next),
    block_hash: HASH(next),
    exists: true,
  });
  const c = cost(await testText(p.page, 'cost'));
  t.deepEqual(c.hint_sources, { hot: 'delta', cold: 'delta' });
  t.is(c.hint_bytes, 0, 'no hint downloaded');
  t.true(c.delta_bytes > 0);
  const during = p.requests.slice(before);
  t.true(during.some((u) => u.includes('/delta/hot')) && during.some((u) => u.includes('/delta/cold')), during.join('\n'));
  t.false(during.some((u) => u.includes('/hint/')), 'a delta, not a full hint download');
  t.log(`lookup after one block: delta ${c.delta_bytes} bytes, ${JSON.stringify(c.timings_ms)}`);
  // The hints in IndexedDB follow (written behind the lookup): both lanes at the new block.
  const waited = Date.now();
  t.deepEqual(await cachedGenerations(p.page, { hot: String(next), cold: String(next) }), { hot: String(next), cold: String(next) });
  t.log(`IndexedDB holds the new block's hints ${Date.now() - waited} ms after the lookup`);
  await p.page.close();

  // A returning visit (same profile): the hints of the new block come from IndexedDB, checked, with no download.
  const back = await openLookup(t, `/?address=${holder}&token=${token}`);
  t.is(back.state, 'done', await testText(back.page, 'error'));
  const bc = cost(await testText(back.page, 'cost'));
  t.deepEqual(bc.hint_sources, { hot: 'cache', cold: 'cache' });
  t.false(back.requests.some((u) => u.includes('/hint/') || u.includes('/delta/')));
  const tokens = JSON.parse(await testText(back.page, 'tokens')) as { balance: string }[];
  t.deepEqual(tokens.map((x) => x.balance), [newTokenBalance.toString()]);
  t.deepEqual(foreignRequests([...p.requests, ...back.requests], server.publicUrl), []);
  await back.page.close();
});

test.serial('a page on another origin uses the bundle and its worker against the server (CORS)', async (t) => {
  const { syn, model, server } = fixture();
  // An account no block changed: its values are the base state's, at whatever block the server serves.
  const address = syn.holderOf(2, 30).address;
  const served = ((await (await fetch(`${server.publicUrl}/info`)).json()) as { block_number: number }).block_number;
  const bundle = `${server.publicUrl}/assets/lanepir-client.js`;
  const html = `<!doctype html><meta charset="utf-8"><title>wallet</title><body data-state="busy"><script type="module">
    import { LanepirWorker, createWorkerProvider } from ${JSON.stringify(bundle)};
    try {
      const lanepir = await LanepirWorker.start({ url: ${JSON.stringify(server.publicUrl)}, cache: 'none' });
      const { value, report } = await lanepir.getAccount(${JSON.stringify(address)});
      // The EIP-1193 provider runs in the worker too; only what lanepir does not answer reaches the passthrough.
      const passed = [];
      const provider = createWorkerProvider(lanepir, { passthrough: { request: async (a) => { passed.push(a.method); return '0x1'; } } });
      const balance = await provider.request({ method: 'eth_getBalance', params: [${JSON.stringify(address)}, 'latest'] });
      const gasPrice = await provider.request({ method: 'eth_gasPrice' });
      const bare = createWorkerProvider(lanepir);
      const refused = await bare.request({ method: 'eth_gasPrice' }).then(() => null, (e) => e.code);
      const badBlock = await bare.request({ method: 'eth_getBalance', params: [${JSON.stringify(address)}, '0x1'] }).then(() => null, (e) => e.code);
      document.body.dataset.result = JSON.stringify({ balance: String(value.balance), nonce: String(value.nonce), block: String(value.block.number), lanes: report.round.queries, provider: { balance, gasPrice, passed, refused, badBlock } });
      document.body.dataset.state = 'done';
    } catch (err) {
      document.body.dataset.result = String(err && err.message) + ' ' + String(err && err.code);
      document.body.dataset.state = 'error';
    }
  </script></body>`;
  const other = http.createServer((req, res) => {
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.end(html);
  });
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    other.closeAllConnections(); // the browser keeps its connection alive
    return new Promise<void>((r) => other.close(() => r()));
  });
  const origin = `http://localhost:${(other.address() as AddressInfo).port}`; // another origin than 127.0.0.1:<server port>
  t.not(new URL(origin).origin, new URL(server.publicUrl).origin);

  const rp = await recordedPage(fixture().chromium.browser);
  await rp.page.goto(`${origin}/wallet.html`);
  const state = await lookupSettled(rp.page);
  const result = await rp.page.evaluate(() => document.body.dataset.result as string);
  t.is(state, 'done', result);
  const r = JSON.parse(result) as { balance: string; nonce: string; block: string; lanes: Record<string, number>; provider: { balance: string; gasPrice: string; passed: string[]; refused: number; badBlock: number } };
  const want = expectedAccount(model, address, served);
  t.deepEqual({ balance: r.balance, nonce: r.nonce, block: r.block }, { balance: want.balance, nonce: want.nonce, block: String(served) });
  t.deepEqual(Object.keys(r.lanes).sort(), ['cold', 'hot']);
  t.is(BigInt(r.provider.balance).toString(), want.balance, 'eth_getBalance through the worker provider');
  t.deepEqual({ gasPrice: r.provider.gasPrice, passed: r.provider.passed }, { gasPrice: '0x1', passed: ['eth_gasPrice'] }, 'only the method lanepir does not answer went to the passthrough');
  t.is(r.provider.refused, 4200);
  t.is(r.provider.badBlock, -32000, 'a block the server does not serve fails; it does not fall back');
  t.true(rp.requests.some((u) => u.startsWith(`${server.publicUrl}/query/`)));
  t.deepEqual(rp.errors, []);
  await rp.page.close();
});
