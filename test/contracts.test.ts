// contracts/build.json (committed: the tests, the benchmarks and `npm run
// demo` deploy it without a compiler) is what contracts/compile.mjs makes of
// contracts/*.sol with the solc version package.json pins.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

test('contracts/build.json equals a fresh compile of contracts/*.sol with the pinned solc', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
  const pinned = pkg.devDependencies.solc!;
  t.regex(pinned, /^\d+\.\d+\.\d+$/, 'solc is pinned to an exact version (a compiler upgrade must be a deliberate rebuild)');
  const { compile } = (await import(pathToFileURL(path.join(root, 'contracts', 'compile.mjs')).href)) as { compile: () => { compiler: string } };
  const fresh = compile();
  t.true(fresh.compiler.startsWith(`${pinned}+`), `compiled with ${fresh.compiler}, package.json pins ${pinned}`);
  const committed = JSON.parse(fs.readFileSync(path.join(root, 'contracts', 'build.json'), 'utf8')) as unknown;
  t.deepEqual(committed, JSON.parse(JSON.stringify(fresh)), 'contracts/build.json is stale: run node contracts/compile.mjs and commit the result');
});
