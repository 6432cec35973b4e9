#!/usr/bin/env node
// Builds the browser client and the lookup page into dist/browser/ (part of
// `npm run build`; type checking is `tsc -p tsconfig.browser.json` before it):
//
//   lanepir-client.js   the client bundle (ES module, lanepir/browser) + .map
//   lanepir-worker.js   the worker script: imports lanepir-client.js beside it
//   page.js             the lookup page's script: imports lanepir-client.js
//   index.html, page.css
//
// The worker script and the page import the bundle instead of containing it,
// so a browser loads the client code once. A Node built-in anywhere in the
// import graph fails the build: the bundle must run in browsers.
import { builtinModules } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const src = path.join(root, 'src/browser');
const out = path.join(root, 'dist/browser');
const BUNDLE = 'lanepir-client.js';
const clientEntry = path.join(src, 'index.ts');

const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/** Fails the build on any import of a Node built-in (also ones a package's "browser" field would stub out). */
const noNodeBuiltins = {
  name: 'no-node-builtins',
  setup(build) {
    build.onResolve({ filter: /^[a-z_:/]+$/ }, (args) => {
      const name = args.path.split('/')[0];
      if (!builtins.has(args.path) && !builtins.has(name) && !args.path.startsWith('node:')) return undefined;
      return {
        errors: [{ text: `Node built-in "${args.path}" imported by ${path.relative(root, args.importer) || '(entry)'}: the browser bundle must not use Node built-ins` }],
      };
    });
  },
};

/** In the worker script and the page, the client is the bundle beside them (not a second copy). */
const clientAsExternal = {
  name: 'client-as-external',
  setup(build) {
    build.onResolve({ filter: /^\.\.?\// }, (args) => {
      const resolved = path.resolve(args.resolveDir, args.path.replace(/\.js$/, '.ts'));
      if (resolved !== clientEntry) return undefined;
      return { path: `./${BUNDLE}`, external: true };
    });
  },
};

const common = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  sourcemap: 'linked',
  minify: true,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  absWorkingDir: root,
};

async function bundle(entry, outfile, plugins) {
  let result;
  try {
    result = await esbuild.build({ ...common, entryPoints: [entry], outfile, plugins: [noNodeBuiltins, ...plugins] });
  } catch (err) {
    // esbuild has printed each error with its source location.
    console.error(`browser build failed: ${path.relative(root, outfile)} (${err.errors?.length ?? 1} error(s) above)`);
    process.exit(1);
  }
  for (const input of Object.keys(result.metafile.inputs)) {
    // Belt and braces: nothing Node-only may have been pulled in under another name.
    if (builtins.has(input) || input.startsWith('node:')) {
      console.error(`browser build failed: ${path.relative(root, outfile)} contains the Node built-in ${input}`);
      process.exit(1);
    }
  }
  return result;
}

fs.mkdirSync(out, { recursive: true });
const results = {
  [BUNDLE]: await bundle(clientEntry, path.join(out, BUNDLE), []),
  'lanepir-worker.js': await bundle(path.join(src, 'worker.ts'), path.join(out, 'lanepir-worker.js'), [clientAsExternal]),
};
const pageEntry = path.join(src, 'page/page.ts');
if (fs.existsSync(pageEntry)) {
  results['page.js'] = await bundle(pageEntry, path.join(out, 'page.js'), [clientAsExternal]);
  for (const f of ['index.html', 'page.css']) fs.copyFileSync(path.join(src, 'page', f), path.join(out, f));
}

for (const [name, r] of Object.entries(results)) {
  const bytes = Object.entries(r.metafile.outputs).find(([f]) => f.endsWith(name))?.[1].bytes ?? 0;
  const sha = crypto.createHash('sha256').update(fs.readFileSync(path.join(out, name))).digest('hex').slice(0, 12);
  console.log(`dist/browser/${name}: ${(bytes / 1024).toFixed(1)} KiB (sha256 ${sha}…)`);
}
