// Real traffic for e2e tests, run with node inside a workload's network namespace (nsenter).
//   node traffic.mjs listen <addr> <port,...>   TCP and UDP on each port; prints "ready", then
//                                               one JSON line per UDP datagram: {"udp": payload}
//   node traffic.mjs send <addr> <cases.json>   opens each case's connection from <addr> at once
//                                               and prints one JSON line: {"<id>": true|false}
//   node traffic.mjs echo <addr> <port>          a TCP server that sends back every line it gets
//   node traffic.mjs chat <addr> <dst> <port>    one TCP connection kept open: lines on stdin go
//                                               out, lines that come back are printed as
//                                               {"line": ...}; {"connected": true} first,
//                                               {"closed": reason} when it ends
//   node traffic.mjs flood <addr> <dst> <port> <tag> <ms>
//                                               one UDP datagram "<tag>-<n>" every millisecond or so,
//                                               each from a new socket (a new flow for conntrack),
//                                               until <ms> have passed or stdin closes; prints {"sent": n}
// A case is {"id", "dst", "protocol": "tcp"|"udp"|"icmp"|"icmpv6", "port"}. tcp: true when the
// connection opened. udp: always true here; the listener's line shows whether it arrived.
// icmp/icmpv6: true when one echo was answered (busybox ping).
import { createServer, connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';

const [mode, addr, arg] = process.argv.slice(2);
const TIMEOUT_MS = 2000;

async function listen() {
  const ports = arg.split(',').map(Number);
  const family = isIPv6(addr) ? 'udp6' : 'udp4';
  await Promise.all(
    ports.flatMap((port) => [
      new Promise((resolve, reject) => {
        // The sender resets the connection once it is open: not an error here.
        const srv = createServer((sock) => {
          sock.on('error', () => undefined);
          sock.end('ok\n');
        });
        srv.once('error', reject);
        srv.listen(port, addr, resolve);
      }),
      new Promise((resolve, reject) => {
        const sock = createSocket(family);
        sock.on('message', (msg) => process.stdout.write(`${JSON.stringify({ udp: msg.toString() })}\n`));
        sock.once('error', reject);
        sock.bind(port, addr, resolve);
      }),
    ]),
  );
  // Runs until the test stops it.
  process.stdout.write('ready\n');
}

function tcp(c) {
  return new Promise((resolve) => {
    const s = connect({ host: c.dst, port: c.port, localAddress: addr });
    const done = (ok) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), TIMEOUT_MS);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function udp(c) {
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(c.dst) ? 'udp6' : 'udp4');
    sock.bind(0, addr, () => {
      // Three copies: the first may wait for neighbour discovery; one arriving is enough.
      let n = 0;
      const next = () => {
        if (n++ === 3) {
          sock.close();
          resolve(true);
          return;
        }
        sock.send(c.id, c.port, c.dst, () => setTimeout(next, 50));
      };
      next();
    });
  });
}

function icmp(c) {
  return new Promise((resolve) => {
    const p = spawn('busybox', ['ping', '-c', '1', '-W', String(TIMEOUT_MS / 1000), '-I', addr, c.dst], {
      stdio: 'ignore',
    });
    p.on('close', (code) => resolve(code === 0));
    p.on('error', () => resolve(false));
  });
}

async function send() {
  const cases = JSON.parse(readFileSync(arg, 'utf8'));
  const by = { tcp, udp, icmp, icmpv6: icmp };
  const results = await Promise.all(cases.map((c) => by[c.protocol](c).then((ok) => [c.id, ok])));
  process.stdout.write(`${JSON.stringify(Object.fromEntries(results))}\n`);
}

async function flood() {
  const [dst, port, tag, ms] = process.argv.slice(4);
  const until = Date.now() + Number(ms);
  let stop = false;
  process.stdin.on('end', () => (stop = true));
  process.stdin.resume();
  let n = 0;
  while (!stop && Date.now() < until) {
    const sock = createSocket(isIPv6(dst) ? 'udp6' : 'udp4');
    await new Promise((r) => sock.bind(0, addr, r));
    await new Promise((r) => sock.send(`${tag}-${n}`, Number(port), dst, r));
    sock.close();
    n++;
    await new Promise((r) => setTimeout(r, 1));
  }
  process.stdout.write(`${JSON.stringify({ sent: n })}\n`);
  process.exit(0);
}

async function echo() {
  const srv = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.pipe(sock);
  });
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(Number(arg), addr, resolve);
  });
  process.stdout.write('ready\n');
}

function chat() {
  const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
  const [dst, port] = process.argv.slice(4);
  const s = connect({ host: dst, port: Number(port), localAddress: addr });
  let buf = '';
  s.on('connect', () => out({ connected: true }));
  s.on('data', (c) => {
    buf += c.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      out({ line: buf.slice(0, i) });
      buf = buf.slice(i + 1);
    }
  });
  s.on('error', (e) => out({ closed: e.message }));
  s.on('close', () => process.exit(0));
  process.stdin.on('data', (c) => s.write(c));
  process.stdin.on('end', () => s.end());
}

if (mode === 'listen') await listen();
else if (mode === 'echo') await echo();
else if (mode === 'chat') chat();
else if (mode === 'send') await send();
else if (mode === 'flood') await flood();
else {
  process.stderr.write(
    'usage: traffic.mjs listen <addr> <ports> | send <addr> <cases.json> | flood <addr> <dst> <port> <tag> <ms>\n',
  );
  process.exit(2);
}
