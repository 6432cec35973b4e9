// Compiles contracts/*.sol with the npm solc package (the exact version
// package.json pins) and writes contracts/build.json (committed;
// test/contracts.test.ts checks that it matches a fresh compile).
// Run: node contracts/compile.mjs
// EVM version shanghai: the bytecode runs on the development chain whichever
// hardfork it is started with (the pre-Cancun tests use shanghai).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const solc = createRequire(import.meta.url)('solc');

export function compile() {
  const settings = { optimizer: { enabled: true, runs: 200 }, evmVersion: 'shanghai', outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } } };
  const files = fs.readdirSync(here).filter((f) => f.endsWith('.sol')).sort();
  const sources = Object.fromEntries(files.map((f) => [f, { content: fs.readFileSync(path.join(here, f), 'utf8') }]));
  const output = JSON.parse(solc.compile(JSON.stringify({ language: 'Solidity', sources, settings })));
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error');
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join('\n'));
  const contracts = {};
  for (const f of files) {
    for (const [name, c] of Object.entries(output.contracts[f])) {
      if (contracts[name]) throw new Error(`contract ${name} is defined twice`);
      contracts[name] = { source: f, abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` };
    }
  }
  return { compiler: solc.version(), sources: files, settings, contracts };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  fs.writeFileSync(path.join(here, 'build.json'), `${JSON.stringify(compile(), null, 1)}\n`);
  console.log('wrote contracts/build.json');
}
