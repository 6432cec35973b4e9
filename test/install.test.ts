// The README's commands must not rebuild the addon under running processes:
// `npx lanepir` inside the checkout installs the checkout into npm's npx
// cache, which runs the package's install script here (issue 8).
import test from 'ava';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { rmrf, tempDir } from './helpers.js';

const execFileAsync = promisify(execFile);
const ADDON = path.resolve('build/Release/lanepir.node');

async function runEnv(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, { env, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** Runs fn while sampling whether the addon exists; returns fn's result and how often it was missing. */
async function watchingAddon<T>(fn: () => Promise<T>): Promise<{ result: T; missing: number }> {
  let missing = 0;
  const timer = setInterval(() => {
    if (!fs.existsSync(ADDON)) missing++;
  }, 20);
  try {
    return { result: await fn(), missing };
  } finally {
    clearInterval(timer);
  }
}

test.serial('npx lanepir --help in the checkout (first use, fresh npx cache) keeps the built addon in place', async (t) => {
  const before = fs.statSync(ADDON);
  const cache = tempDir('lanepir-npx-cache-');
  t.teardown(() => rmrf(cache));
  const started = performance.now();
  const { result, missing } = await watchingAddon(() =>
    runEnv('npx', ['lanepir', '--help'], { ...process.env, npm_config_cache: cache, npm_config_offline: 'true', npm_config_update_notifier: 'false' }),
  );
  t.is(result.code, 0, result.stderr);
  t.regex(result.stdout, /Usage: lanepir/);
  t.is(missing, 0, 'build/Release/lanepir.node disappeared while npx ran');
  t.is(fs.statSync(ADDON).ino, before.ino, 'the up-to-date addon was rebuilt');
  t.log(`npx lanepir --help took ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

test.serial('npm run build:native with an up-to-date addon changes nothing', async (t) => {
  const before = fs.statSync(ADDON);
  const { result, missing } = await watchingAddon(() => runEnv('npm', ['run', '--silent', 'build:native'], process.env));
  t.is(result.code, 0, result.stderr);
  t.is(missing, 0);
  t.is(fs.statSync(ADDON).ino, before.ino);
});

test('a checkout without the built addon: bin/lanepir.js says how to build it (one line, no stack, exit 1)', async (t) => {
  // A copy of the compiled CLI next to no build/ directory.
  const root = tempDir('lanepir-unbuilt-');
  t.teardown(() => rmrf(root));
  fs.cpSync(path.resolve('dist/src'), path.join(root, 'dist/src'), { recursive: true });
  fs.cpSync(path.resolve('bin'), path.join(root, 'bin'), { recursive: true });
  fs.copyFileSync(path.resolve('package.json'), path.join(root, 'package.json'));
  fs.symlinkSync(path.resolve('node_modules'), path.join(root, 'node_modules'));
  const r = await runEnv(process.execPath, [path.join(root, 'bin/lanepir.js'), '--help'], process.env);
  t.is(r.code, 1);
  t.regex(r.stderr, /native addon .*build\/Release\/lanepir\.node is not built: run `npm run build`/);
  t.notRegex(r.stderr, /^\s+at /m);
});
