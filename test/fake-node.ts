// A scripted JSON-RPC node for change-source tests: one block (by hash and
// number, with or without full transactions), canned trace answers, and
// state read-backs from a table. Records every method asked for.
import http from 'node:http';
import { type AddressInfo } from 'node:net';

export interface FakeAccount {
  balance?: string;
  nonce?: string;
  code?: string;
  storage?: Record<string, string>;
}

export interface FakeNodeOptions {
  /** The block as eth_getBlockByHash(hash, true) answers it (transactions are objects with at least `hash`). */
  block: Record<string, unknown> & { hash: string; number: string; transactions: Record<string, unknown>[] };
  /** debug_traceBlockByHash / debug_traceBlockByNumber answer (prestateTracer). */
  prestate?: unknown[];
  /** trace_replayBlockTransactions answer. */
  statediff?: unknown[];
  /** State at the block (missing: zero / empty). */
  state?: Record<string, FakeAccount>;
  /** false: the block was reorged out; state reads by its hash with requireCanonical are refused, as geth does. */
  canonical?: boolean;
}

export interface FakeNode {
  url: string;
  /** Methods asked for, in order. */
  calls: { method: string; params: unknown[] }[];
  close(): Promise<void>;
}

export async function startFakeNode(opts: FakeNodeOptions): Promise<FakeNode> {
  const calls: FakeNode['calls'] = [];
  const { block } = opts;
  const hashesOnly = { ...block, transactions: block.transactions.map((t) => t.hash) };
  const acct = (a: unknown) => opts.state?.[String(a).toLowerCase()] ?? {};
  const answer = (method: string, p: unknown[]): unknown => {
    const at = p[p.length - 1] as { blockHash?: string; requireCanonical?: boolean } | undefined;
    if (method.startsWith('eth_get') && opts.canonical === false && at?.blockHash === block.hash && at.requireCanonical) {
      return { error: { code: -32000, message: `hash ${block.hash} is not currently canonical` } };
    }
    switch (method) {
      case 'eth_getBlockByHash':
        return p[0] === block.hash ? (p[1] ? block : hashesOnly) : null;
      case 'eth_getBlockByNumber':
        return p[0] === block.number || p[0] === 'latest' ? (p[1] ? block : hashesOnly) : null;
      case 'debug_traceBlockByHash':
        return p[0] === block.hash ? opts.prestate : undefined;
      case 'debug_traceBlockByNumber':
        return p[0] === block.number ? opts.prestate : undefined;
      case 'trace_replayBlockTransactions':
        return p[0] === block.number ? opts.statediff : undefined;
      case 'eth_getTransactionByHash':
        return block.transactions.find((t) => t.hash === p[0]) ?? null;
      case 'eth_getTransactionReceipt':
        return block.transactions.some((t) => t.hash === p[0]) ? { blockHash: block.hash, contractAddress: null, status: '0x1' } : null;
      case 'debug_traceTransaction':
        return { structLogs: [] };
      case 'eth_getBalance':
        return acct(p[0]).balance ?? '0x0';
      case 'eth_getTransactionCount':
        return acct(p[0]).nonce ?? '0x0';
      case 'eth_getCode':
        return acct(p[0]).code ?? '0x';
      case 'eth_getStorageAt':
        return acct(p[0]).storage?.[String(p[1])] ?? `0x${'0'.repeat(64)}`;
      default:
        return undefined;
    }
  };
  const one = (r: { id: unknown; method: string; params?: unknown[] }) => {
    calls.push({ method: r.method, params: r.params ?? [] });
    const result = answer(r.method, r.params ?? []);
    if (typeof result === 'object' && result !== null && 'error' in result) return { jsonrpc: '2.0', id: r.id, ...result };
    if (result === undefined) return { jsonrpc: '2.0', id: r.id, error: { code: -32601, message: `the method ${r.method} does not exist/is not available` } };
    return { jsonrpc: '2.0', id: r.id, result };
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as Parameters<typeof one>[0] | Parameters<typeof one>[0][];
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(Array.isArray(body) ? body.map(one) : one(body)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
