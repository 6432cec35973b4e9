// Proxies in front of a local node for tests: a TCP proxy that can stop
// forwarding (the node "goes away": connections hang, then are cut), and
// JSON-RPC proxies that answer some calls themselves: hiding methods (a node
// without the debug API), or any fault a test scripts (a node behind, state
// that is gone).
import http from 'node:http';
import net from 'node:net';

export interface TcpProxy {
  url: string;
  /** Stop forwarding: open connections are cut, new ones are accepted and left hanging. */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const { hostname, port } = new URL(target);
  let paused = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (paused) return; // a black hole: the client times out
    const upstream = net.connect(Number(port), hostname);
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: p } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${p}`,
    pause() {
      paused = true;
      for (const s of sockets) s.destroy();
    },
    resume() {
      paused = false;
      for (const s of sockets) s.destroy(); // hanging clients retry on fresh connections
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

export interface JsonRpcCall {
  id: unknown;
  method: string;
  params?: unknown[];
}

/**
 * A JSON-RPC proxy that lets `rewrite` answer a call in place of the node:
 * it returns a `{ result }` or `{ error }` to answer, or undefined to forward.
 */
export async function startRewritingProxy(
  target: string,
  rewrite: (call: JsonRpcCall) => Promise<{ result: unknown } | { error: { code: number; message: string } } | undefined> | { result: unknown } | { error: { code: number; message: string } } | undefined,
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString() || 'null');
    const one = async (r: JsonRpcCall) => {
      const answer = await rewrite(r);
      if (answer) return { jsonrpc: '2.0', id: r.id, ...answer };
      const up = await fetch(target, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(r) });
      return up.json();
    };
    try {
      const answer = Array.isArray(body) ? await Promise.all(body.map(one)) : await one(body);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(answer));
    } catch {
      res.writeHead(502).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A JSON-RPC proxy answering "method not found" (-32601) for methods matching `hide`. */
export function startHidingProxy(target: string, hide: RegExp): Promise<{ url: string; close: () => Promise<void> }> {
  return startRewritingProxy(target, (r) => (hide.test(r.method) ? { error: { code: -32601, message: `the method ${r.method} does not exist/is not available` } } : undefined));
}
