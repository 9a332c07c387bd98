/**
 * Ports for servers the tests and benchmarks start on loopback. A port is picked at random below the
 * kernel's ephemeral range (net.ipv4.ip_local_port_range), where no outgoing connection or
 * unbound socket is ever given a port: a port in that range that is free when checked can be taken
 * a moment later by any client socket on the machine (a Kafka or MySQL connection of a test running
 * in parallel), and the server started on it then fails with EADDRINUSE.
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';

const LOWEST = 10_000;

/** The first port of the ephemeral range (32768 unless the machine says otherwise). */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(first) && first > LOWEST + 1000) return first;
  } catch {
    // not Linux: use the default below
  }
  return 32_768;
}

const HIGHEST = ephemeralStart() - 1;

/** Whether `port` can be bound now on 127.0.0.1, for TCP and for UDP. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => {
      const sock = dgram.createSocket('udp4');
      sock.once('error', () => srv.close(() => resolve(false)));
      sock.bind(port, '127.0.0.1', () => sock.close(() => srv.close(() => resolve(true))));
    });
  });
}

/** A port free for both UDP and TCP on 127.0.0.1, outside the ephemeral range. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (HIGHEST - LOWEST));
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port found between ${LOWEST} and ${HIGHEST}`);
}
