// describeFetchFailure / fetchError: the cause of a failed fetch, not just "fetch failed".
import test from 'ava';
import http from 'node:http';
import net from 'node:net';
import { describeFetchFailure, fetchError } from '../src/pir/errors.js';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

async function failure(url: string, init?: RequestInit): Promise<unknown> {
  try {
    await fetch(url, init);
  } catch (err) {
    return err;
  }
  throw new Error(`fetch ${url} did not fail`);
}

test('a refused connection names the code and the address', async (t) => {
  const port = await closedPort();
  const err = await failure(`http://127.0.0.1:${port}/info`);
  t.is(describeFetchFailure(err), `ECONNREFUSED 127.0.0.1:${port}`);
  t.is(fetchError('GET /info', err).code, 'ENETWORK');
});

test('a timeout says so', async (t) => {
  const server = http.createServer(() => {}); // never answers
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as net.AddressInfo;
  const err = await failure(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(200) });
  t.is(describeFetchFailure(err, 200), 'no answer within 200 ms');
  t.is(fetchError('GET /', err, 200).code, 'ETIMEDOUT');
});

test('several addresses tried (AggregateError), a DNS failure, a browser error without a cause, a bad URL', (t) => {
  const refused = (address: string) => Object.assign(new Error(`connect ECONNREFUSED ${address}:3000`), { code: 'ECONNREFUSED', address, port: 3000 });
  const aggregate = Object.assign(new TypeError('fetch failed'), { cause: new AggregateError([refused('::1'), refused('127.0.0.1')]) });
  t.is(describeFetchFailure(aggregate), 'ECONNREFUSED [::1]:3000, ECONNREFUSED 127.0.0.1:3000');
    const dns = Object.assign(new TypeError('fetch failed'), {
    cause: Object.assign(new Error('getaddrinfo ENOTFOUND pir.invalid'), { code: 'ENOTFOUND', hostname: 'pir.invalid' }),
  });
  t.is(describeFetchFailure(dns), 'ENOTFOUND pir.invalid');
  t.is(describeFetchFailure(new TypeError('Failed to fetch')), 'Failed to fetch');
    const badUrl = Object.assign(new TypeError('Failed to parse URL from x/info'), { cause: new TypeError('Invalid URL') });
  t.is(describeFetchFailure(badUrl), 'Failed to parse URL from x/info (Invalid URL)');
  t.is(describeFetchFailure('plain'), 'plain');
});
