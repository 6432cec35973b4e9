// Keyword rounds of any size against servers with default limits: a lane's
// POSTs are paced (a few in flight, each at most batch_max queries), the
// requests depend only on k, d and padding, and refusals with Retry-After
// (429/503) are waited out and retried.
import test from 'ava';
import { KeywordReader } from '../src/pir/keyword-remote.js';
import { hex, keywordServer } from './keyword-helpers.js';

interface Sent {
  lane: string;
  queries: number;
  status: number;
}

/**
 * A fetch that records every POST /query (lane, queries in it, status) in
 * the order sent, and the most POSTs in flight at once per lane.
 */
function watchingFetch(queryBytes: Record<string, number>) {
  const posts: Sent[] = [];
  const inFlight: Record<string, number> = {};
  const maxInFlight: Record<string, number> = {};
  const fn = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : input);
    const m = /^\/query\/([^/]+)$/.exec(url.pathname);
    if (!m || init?.method !== 'POST') return fetch(input, init);
    const lane = m[1]!;
    const sent: Sent = { lane, queries: (init.body as Uint8Array).byteLength / queryBytes[lane]!, status: 0 };
    posts.push(sent);
    inFlight[lane] = (inFlight[lane] ?? 0) + 1;
    maxInFlight[lane] = Math.max(maxInFlight[lane] ?? 0, inFlight[lane]!);
    try {
      const res = await fetch(input, init);
      sent.status = res.status;
      // In flight until the answer is read: buffer it here.
      const body = await res.arrayBuffer();
      return new Response(body, { status: res.status, headers: res.headers });
    } finally {
      inFlight[lane]!--;
    }
  }) as typeof fetch;
  return { fn, posts, maxInFlight };
}

async function queryBytesOf(url: string): Promise<Record<string, number>> {
  const info = (await (await fetch(`${url}/info`)).json()) as { lanes: Record<string, { query_bytes: number }> };
  return Object.fromEntries(Object.entries(info.lanes).map(([l, v]) => [l, v.query_bytes]));
}

test('a round of 40 keys against a default server: k*d queries per lane, POSTs of at most batch_max, a few in flight per lane', async (t) => {
  const { server, hot, cold, info } = await keywordServer(t);
  const watch = watchingFetch(await queryBytesOf(server.publicUrl));
  const reader = new KeywordReader({ url: server.publicUrl, fetch: watch.fn });
  const hotKeys = hot.slice(0, 25);
  const coldKeys = cold.slice(0, 15);
  const round = await reader.lookupRound({ hot: hotKeys.map((r) => r.key), cold: coldKeys.map((r) => r.key) });
  t.deepEqual(round.results.hot!.map((r) => hex(r.value)), hotKeys.map((r) => hex(r.value)));
  t.deepEqual(round.results.cold!.map((r) => hex(r.value)), coldKeys.map((r) => hex(r.value)));
  t.true(round.results.hot!.every((r) => r.exists));
  const batchMax = info.batch_max;
  for (const lane of ['hot', 'cold']) {
    const total = 40 * info.lanes[lane]!.bucket_choices;
    t.true(total > 64, 'more queries than a default lane takes at once');
    t.is(round.queries[lane], total);
    const sizes = watch.posts.filter((p) => p.lane === lane).map((p) => p.queries);
    const want = Array.from({ length: Math.ceil(total / batchMax) }, (_, i) => Math.min(batchMax, total - i * batchMax));
    t.deepEqual(sizes, want, `${lane}: POST sizes in order`);
    t.true(watch.maxInFlight[lane]! <= 2, `${lane}: at most 2 POSTs in flight (saw ${watch.maxInFlight[lane]})`);
  }
  t.true(watch.posts.every((p) => p.status === 200));
});

test('two wallets opening at once (rounds of 22 keys) are both served by a default server', async (t) => {
  const { server, hot, cold } = await keywordServer(t);
  const a = new KeywordReader({ url: server.publicUrl });
  const b = new KeywordReader({ url: server.publicUrl });
  // Hints first, so that the two rounds' POSTs meet at the server.
  await Promise.all([a.lookup('hot', hot[0]!.key), b.lookup('hot', hot[0]!.key)]);
  for (let i = 0; i < 3; i++) {
    const keysA = { hot: hot.slice(30 + i * 22, 30 + i * 22 + 12).map((r) => r.key), cold: cold.slice(i * 22, i * 22 + 10).map((r) => r.key) };
    const keysB = { hot: hot.slice(300 + i * 22, 300 + i * 22 + 22).map((r) => r.key) };
    const [ra, rb] = await Promise.all([a.lookupRound(keysA), b.lookupRound(keysB)]);
    t.deepEqual(ra.results.hot!.map((r) => hex(r.value)), hot.slice(30 + i * 22, 30 + i * 22 + 12).map((r) => hex(r.value)));
    t.deepEqual(ra.results.cold!.map((r) => hex(r.value)), cold.slice(i * 22, i * 22 + 10).map((r) => hex(r.value)));
    t.deepEqual(rb.results.hot!.map((r) => hex(r.value)), hot.slice(300 + i * 22, 300 + i * 22 + 22).map((r) => hex(r.value)));
  }
});
