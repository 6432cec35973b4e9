// /metrics is one valid Prometheus text exposition: every family described
// once, its samples together (a real Prometheus keeps only the first copy of
// a duplicated family and drops the rest).
import test from 'ava';
import { rmrf, tempDir } from './helpers.js';
import { buildBlock, reload, serve } from './server-helpers.js';
import { request, startCluster } from './cluster-helpers.js';

/** Problems with a text exposition (format 0.0.4): duplicate HELP/TYPE, split or orphan samples. */
export function expositionProblems(text: string): string[] {
  const problems: string[] = [];
  const help = new Set<string>();
  const type = new Map<string, string>();
  const closed = new Set<string>();
  let current: string | undefined;
  const familyOf = (sample: string) => {
    for (const suffix of ['', '_bucket', '_sum', '_count', '_total', '_created']) {
      if (suffix === '' || sample.endsWith(suffix)) {
        const base = suffix === '' ? sample : sample.slice(0, -suffix.length);
        if (type.has(base)) return base;
      }
    }
    return undefined;
  };
  const open = (name: string) => {
    if (current !== name) {
      if (current) closed.add(current);
      if (closed.has(name)) problems.push(`family ${name} is split across blocks`);
      current = name;
    }
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let m = /^# HELP (\S+) /.exec(line);
    if (m) {
      if (help.has(m[1]!)) problems.push(`HELP ${m[1]} twice`);
      help.add(m[1]!);
      open(m[1]!);
      continue;
    }
    m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) {
      if (type.has(m[1]!)) problems.push(`TYPE ${m[1]} twice`);
      type.set(m[1]!, m[2]!);
      open(m[1]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)( \d+)?$/.exec(line);
    if (!m) {
      problems.push(`malformed line: ${line}`);
      continue;
    }
    const family = familyOf(m[1]!);
    if (!family) problems.push(`sample ${m[1]} has no TYPE`);
    else if (family !== current) problems.push(`sample ${m[1]} is outside the block of ${family}`);
    if (Number.isNaN(Number(m[3]!.replace(/^\+Inf$/, 'Infinity').replace(/^-Inf$/, '-Infinity')))) problems.push(`bad value: ${line}`);
  }
  return problems;
}

test('the exposition checker catches what Prometheus rejects', (t) => {
  const family = '# HELP a_total A\n# TYPE a_total counter\na_total{x="1"} 1\n';
  t.deepEqual(expositionProblems(family), []);
  const other = '# HELP b B\n# TYPE b gauge\nb 2\n';
  t.deepEqual(expositionProblems(`${family}\n${family}`).sort(), ['HELP a_total twice', 'TYPE a_total twice']);
  t.deepEqual(expositionProblems(`${family}${other}${family}`).sort(), ['HELP a_total twice', 'TYPE a_total twice', 'family a_total is split across blocks'].sort());
  t.deepEqual(expositionProblems(`${family}${other}a_total{x="2"} 3\n`), ['sample a_total is outside the block of a_total']);
  t.deepEqual(expositionProblems('c 1\n'), ['sample c has no TYPE']);
});

test('single process: /metrics has no duplicate families', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  const server = await serve(data);
  t.teardown(() => server.close());
  t.is((await reload(server, 2)).status, 200);
  const text = (await request(`${server.adminUrl}/metrics`)).body.toString();
  t.deepEqual(expositionProblems(text), []);
  t.regex(text, /^lanepir_reloads_total\{result="ok"\} 2$/m, 'start-up load and one reload');
});

test('cluster: /metrics is one exposition with no duplicate families, the reload metrics counted once', async (t) => {
  const data = tempDir();
  t.teardown(() => rmrf(data));
  const seeds = await buildBlock(data, 1, undefined, true);
  await buildBlock(data, 2, seeds);
  const c = await startCluster(data, { workers: 2 });
  t.teardown(() => c.stop());
  for (const g of [2, 1, 2]) {
    const r = await request(`${c.adminUrl}/admin/reload`, { method: 'POST', body: JSON.stringify({ generation: g }), headers: { 'Content-Type': 'application/json' } });
    t.is(r.status, 200, r.body.toString());
  }
  const res = await request(`${c.adminUrl}/metrics`);
  t.is(res.status, 200);
  t.regex(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = res.body.toString();
  t.deepEqual(expositionProblems(text), []);
  // The primary's count of cluster reloads, not one per worker besides.
  t.regex(text, /^lanepir_reloads_total\{result="ok"\} 3$/m);
  t.regex(text, /^lanepir_reload_duration_seconds_count 3$/m);
  t.regex(text, /^lanepir_workers 2$/m);
  t.regex(text, /^lanepir_worker_generation\{worker="worker-0-\d+"\} 2$/m);
});
