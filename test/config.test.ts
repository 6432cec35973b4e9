// Configuration: file < environment < flags, validated with one message per bad field.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, configHash, loadConfig } from '../src/config.js';
import { rmrf, tempDir } from './helpers.js';

test('defaults derive from the base data directory', (t) => {
  const c = loadConfig({});
  t.is(c.data_dir, path.resolve('./pir-data'));
  t.true(c.use_mmap);
  t.is(c.shard_size_bytes, 128 * 1024);
  t.is(c.port, 3000);
  t.is(c.admin_host, '127.0.0.1');
  t.is(c.admin_port, 3001);
  t.is(c.retain_generations, 4);
  t.true(c.workers >= 1);
});

test('flags win over the environment, which wins over the file', (t) => {
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const file = path.join(dir, 'lanepir.json');
  fs.writeFileSync(file, JSON.stringify({ port: 4000, admin_port: 4001, hot_entries: 5, data_dir: '/from/file' }));
  const c = loadConfig({
    file,
    env: { LANEPIR_PORT: '5000', LANEPIR_ADMIN_PORT: '5001', LANEPIR_DATA: '/from/env', LANEPIR_IN_MEMORY: '1' },
    flags: { port: 6000 },
  });
  t.is(c.port, 6000);
  t.is(c.admin_port, 5001);
  t.is(c.hot_entries, 5);
  t.is(c.data_dir, '/from/env');
  t.false(c.use_mmap);
});

test('every bad field is named', (t) => {
  const err = t.throws(() => loadConfig({ env: { LANEPIR_PORT: 'seventy', LANEPIR_BATCH_MAX: '99' }, flags: { admin_token: 'short' } }), {
    instanceOf: ConfigError,
  });
  t.regex(err!.message, /port/);
  t.regex(err!.message, /batch_max/);
  t.regex(err!.message, /admin_token must be at least 16 characters/);
  const dir = tempDir();
  t.teardown(() => rmrf(dir));
  const file = path.join(dir, 'bad.json');
  fs.writeFileSync(file, '{"port": 1,');
  t.throws(() => loadConfig({ file }), { message: /not valid JSON/ });
  fs.writeFileSync(file, '{"prot": 1}');
  t.throws(() => loadConfig({ file }), { message: /prot|Unrecognized/i });
  t.throws(() => loadConfig({ file: path.join(dir, 'missing.json') }), { message: /cannot read config file/ });
});

test('the config hash ignores the admin token and changes with settings', (t) => {
  const a = configHash(loadConfig({ flags: { admin_token: 'x'.repeat(16) } }));
  const b = configHash(loadConfig({ flags: { admin_token: 'y'.repeat(16) } }));
  const c = configHash(loadConfig({ flags: { batch_max: 4 } }));
  t.is(a, b);
  t.not(a, c);
});
