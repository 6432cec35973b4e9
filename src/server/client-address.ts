// Which client a request comes from, for per-client limits. The peer address
// of the connection, unless that peer is a configured trusted proxy: then
// X-Forwarded-For is read from the right (the entry the proxy appended
// first), skipping further trusted proxies, and the first address that is
// not a trusted proxy is the client. Anything a client writes into the
// header itself sits to the left of that and is never believed.
// IPv6 clients count per /64 (one subscriber's usual allocation), so that
// rotating through one's own addresses does not multiply the cap.
import { BlockList, isIP } from 'node:net';

/** An IPv4/IPv6 address, or a CIDR range of either. */
export function isAddressOrRange(s: string): boolean {
  const [addr, bits, ...rest] = s.split('/');
  const family = isIP(addr ?? '');
  if (family === 0 || rest.length > 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/** IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, as dual-stack sockets report IPv4 peers) as plain IPv4. */
export function normalizeAddress(addr: string): string {
  const a = addr.trim();
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1]! : a;
}

/** The eight 16-bit groups of an IPv6 address (zone id dropped; an embedded IPv4 tail converted). */
function ipv6Groups(addr: string): number[] {
  let a = addr.split('%')[0]!.toLowerCase();
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(a);
  if (v4) {
    const [b0, b1, b2, b3] = v4.slice(1).map(Number) as [number, number, number, number];
    a = `${a.slice(0, v4.index)}${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => parseInt(g, 16));
}

/** The key a client's requests are counted under: its IPv4 address, or its IPv6 /64. */
export function clientKey(addr: string): string {
  const a = normalizeAddress(addr);
  if (isIP(a) !== 6) return a;
  return `${ipv6Groups(a)
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

export class ClientAddresses {
  private readonly trusted = new BlockList();
  private readonly any: boolean;

  constructor(trustedProxies: readonly string[]) {
    for (const entry of trustedProxies) {
      const [addr, bits] = entry.split('/') as [string, string | undefined];
      const a = normalizeAddress(addr);
      const type = isIP(a) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.trusted.addAddress(a, type);
      else this.trusted.addSubnet(a, Number(bits), type);
    }
    this.any = trustedProxies.length > 0;
  }

  private isTrusted(addr: string): boolean {
    const family = isIP(addr);
    return family !== 0 && this.trusted.check(addr, family === 6 ? 'ipv6' : 'ipv4');
  }

  /** The client's address for a connection from `peer` carrying these X-Forwarded-For values. */
  resolve(peer: string | undefined, forwardedFor: string | string[] | undefined): string {
    let client = normalizeAddress(peer ?? '');
    if (!this.any || forwardedFor === undefined || !this.isTrusted(client)) return client;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').map(normalizeAddress);
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      // A malformed entry can only have come from a trusted proxy's side: count the request under that proxy.
      if (isIP(hop) === 0) break;
      client = hop;
      if (!this.isTrusted(hop)) break;
    }
    return client;
  }
}
