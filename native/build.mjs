#!/usr/bin/env node
// Builds the addon (build/Release/lanepir.node) in place, incrementally, and
// never deletes a working one. This is the package's `install` script and
// `npm run build:native`.
//
// Why not npm's default `node-gyp rebuild`: rebuild starts with `clean`,
// which removes build/ and so the addon that running servers and tests load,
// and then recompiles everything (~30 s). npm runs the install script more
// often than one expects: `npx lanepir` inside the checkout installs the
// checkout into npm's npx cache as a link, which runs this script in the
// checkout itself. Here `make` decides what is out of date (nothing, usually:
// a fraction of a second), the linker writes a new file and the result is
// hard-linked over the old name, so a process that has the old addon loaded
// keeps its inode.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = path.join(root, 'build');
const lockDir = path.join(buildDir, '.lanepir-build.lock');

// npm tells its scripts where its bundled node-gyp is; outside npm, use the one on PATH.
const gyp = process.env.npm_config_node_gyp ? [process.execPath, process.env.npm_config_node_gyp] : ['node-gyp'];

function nodeGyp(...args) {
  const [cmd, ...pre] = gyp;
  const r = spawnSync(cmd, [...pre, ...args], { cwd: root, stdio: 'inherit' });
  if (r.error) {
    process.stderr.write(`lanepir: cannot run node-gyp (${r.error.message}); install it (npm i -g node-gyp) or run this through npm (npm run build:native)\n`);
    process.exit(1);
  }
  return r.status ?? 1;
}

/** True when build/ was configured (Makefile and config.gypi) for the running Node's ABI. */
function configured() {
  let gypi;
  try {
    if (!fs.existsSync(path.join(buildDir, 'Makefile'))) return false;
    gypi = fs.readFileSync(path.join(buildDir, 'config.gypi'), 'utf8');
  } catch {
    return false;
  }
  const abi = /"node_module_version":\s*(\d+)/.exec(gypi)?.[1];
  return abi === process.versions.modules;
}

function readPid() {
  try {
    return Number(fs.readFileSync(path.join(lockDir, 'pid'), 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

/** One build at a time per checkout (npm test and npx at once must not run two makes in one tree). */
async function withLock(fn) {
  fs.mkdirSync(buildDir, { recursive: true });
  for (let waited = 0; ; waited += 200) {
    try {
      fs.mkdirSync(lockDir);
      fs.writeFileSync(path.join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      const pid = readPid();
      let alive = false;
      try {
        if (pid > 0) process.kill(pid, 0);
        alive = pid > 0;
      } catch (e) {
        alive = e.code === 'EPERM';
      }
      // A lock of a dead builder (or one whose pid file is not written yet, for at most 2 s).
      if (!alive && (pid > 0 || waited >= 2000)) {
        fs.rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (waited % 10_000 === 0) process.stderr.write(`lanepir: waiting for another build of the addon (pid ${pid || '?'})\n`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}

const status = await withLock(() => {
  if (!configured()) {
    const c = nodeGyp('configure');
    if (c !== 0) return c;
    return nodeGyp('build');
  }
  const b = nodeGyp('build');
  if (b === 0) return 0;
  // A stale configuration (e.g. a moved checkout) can fail the build: configure again, still without cleaning.
  process.stderr.write('lanepir: incremental build failed; configuring again and retrying (the existing addon is kept)\n');
  return nodeGyp('configure') || nodeGyp('build');
});
process.exit(status);
