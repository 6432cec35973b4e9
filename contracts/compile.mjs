// Compiles contracts/Token.sol with the npm solc package and writes
// contracts/build.json (committed; test/contracts.test.ts checks that it
// matches a fresh compile). Run: node contracts/compile.mjs
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const solc = createRequire(import.meta.url)('solc');

export function compile() {
  const settings = { optimizer: { enabled: true, runs: 200 }, evmVersion: 'cancun', outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } } };
  const input = { language: 'Solidity', sources: { 'Token.sol': { content: fs.readFileSync(path.join(here, 'Token.sol'), 'utf8') } }, settings };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors ?? []).filter((e) => e.severity === 'error');
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join('\n'));
  const contracts = {};
  for (const [name, c] of Object.entries(output.contracts['Token.sol'])) contracts[name] = { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` };
  return { compiler: solc.version(), source: 'Token.sol', settings, contracts };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  fs.writeFileSync(path.join(here, 'build.json'), `${JSON.stringify(compile(), null, 1)}\n`);
  console.log('wrote contracts/build.json');
}
