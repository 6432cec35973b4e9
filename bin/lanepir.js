#!/usr/bin/env node
// Entry point of the `lanepir` command; the CLI itself is compiled TypeScript
// (dist/) and the addon is built by `npm ci` / `npm run build`. Run it as
// `node bin/lanepir.js` from a checkout (see README: why not `npx lanepir`).
import { fileURLToPath } from 'node:url';

let cli;
try {
  cli = await import('../dist/src/cli/index.js');
} catch (err) {
  // Not built (or half built): one line that says what to do, not a stack.
  const root = fileURLToPath(new URL('..', import.meta.url));
  process.stderr.write(`lanepir: cannot load the command line: ${err?.message ?? err}\n`);
  if (err?.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write(`lanepir: build it first: cd ${root} && npm ci && npm run build\n`);
  }
  process.exit(1);
}
await cli.main();
