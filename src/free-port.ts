// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it): for
// the demo, tests and benchmarks that start servers on loopback.
import net from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
