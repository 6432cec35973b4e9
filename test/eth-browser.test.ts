// lanepir/client must run in browsers: everything src/client.ts imports,
// transitively, uses no Node module or Node global; bare imports are only
// the browser-safe libraries. And the export resolves to the wallet API.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';

const ALLOWED_PACKAGES = [/^viem$/, /^zod$/, /^@noble\/hashes\/[\w.-]+\.js$/];

test('lanepir/client imports nothing Node-only (the whole import graph of src/client.ts)', (t) => {
  const seen = new Set<string>();
  const queue = [path.resolve('src/client.ts')];
  while (queue.length) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = fs.readFileSync(file, 'utf8');
    for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)) {
      if (spec!.startsWith('.')) queue.push(path.resolve(path.dirname(file), spec!.replace(/\.js$/, '.ts')));
      else t.true(ALLOWED_PACKAGES.some((re) => re.test(spec!)), `${path.relative('.', file)} imports ${spec}`);
    }
    t.false(/\b(Buffer|process|require|__dirname)\b[.(]/.test(text), `${path.relative('.', file)} uses a Node global`);
  }
  t.true(seen.has(path.resolve('src/eth/provider.ts')) && seen.has(path.resolve('src/pir/keyword-remote.ts')));
});

test('lanepir/client exports the wallet API', async (t) => {
  const mod = await import('lanepir/client');
  for (const name of ['StateClient', 'createLanepirProvider', 'KeywordReader', 'PirClient', 'RemoteLane', 'HotManifest', 'erc20BalanceSlot']) {
    t.is(typeof (mod as Record<string, unknown>)[name], 'function', name);
  }
});
