// The development chain (Hardhat) is stopped on every path: a process that
// exits without calling stop() still kills its node and removes its files.
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rmrf, tempDir } from './helpers.js';

const devchainModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/eth/devchain/hardhat.js');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('a process that exits without stop() kills its dev chain and removes its temporary directory', async (t) => {
  const tmp = tempDir('lanepir-devchain-exit-');
  t.teardown(() => rmrf(tmp));
  const script = `import { startDevChain } from ${JSON.stringify(devchainModule)};
const chain = await startDevChain();
console.log(chain.pid);
process.exit(3);`;
  // TMPDIR: the node's directory is created in a directory of this test's own.
  const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const child = execFile(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, TMPDIR: tmp }, timeout: 90_000 }, (err, out) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout: out }),
    );
    child.stdin?.end();
  });
  t.is(code, 3, 'the script ran to its exit');
  const pid = Number(stdout.trim());
  t.true(pid > 0, `printed the node's pid: ${stdout}`);
  const deadline = Date.now() + 5000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.false(alive(pid), 'the node is gone');
  t.deepEqual(fs.readdirSync(tmp), [], 'no temporary directory left');
});
