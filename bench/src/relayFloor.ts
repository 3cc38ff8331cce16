// The floor for bench/proxy's raw API calls: the least a Node proxy that reads each request with
// node:http and buffers dockerd's answer can cost. A node:http server in its own process (as
// calico-node is), and towards dockerd one keep-alive socket with the request written by hand and
// the answer framed by hand (Content-Length or chunked), which is cheaper than node:http's client.
// It routes nothing, checks nothing and rewrites nothing; GET only, one request at a time.
//   node relayFloor.js <dockerd socket> <listen socket>
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { rmSync } from 'node:fs';

const [upstreamPath, listenPath] = process.argv.slice(2);
if (!upstreamPath || !listenPath) {
  console.error('usage: relayFloor.js <dockerd socket> <listen socket>');
  process.exit(2);
}

interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
}

let upstream: Socket | undefined;
let buffered: Buffer = Buffer.alloc(0);
let waiting: ((a: Answer) => void) | undefined;

/** One whole answer at the front of the buffer, or undefined while it is still arriving. */
function takeAnswer(): Answer | undefined {
  const headEnd = buffered.indexOf('\r\n\r\n');
  if (headEnd < 0) return undefined;
  const head = buffered.subarray(0, headEnd).toString('latin1');
  const status = Number(head.slice(9, 12));
  const contentType = /\r\ncontent-type: *([^\r]*)/i.exec(head)?.[1] ?? 'application/json';
  const length = /\r\ncontent-length: *(\d+)/i.exec(head);
  let body: Buffer;
  let end: number;
  if (length) {
    end = headEnd + 4 + Number(length[1]);
    if (buffered.length < end) return undefined;
    body = buffered.subarray(headEnd + 4, end);
  } else {
    const parts: Buffer[] = [];
    let i = headEnd + 4;
    for (;;) {
      const lineEnd = buffered.indexOf('\r\n', i);
      if (lineEnd < 0) return undefined;
      const n = parseInt(buffered.subarray(i, lineEnd).toString('latin1'), 16);
      if (buffered.length < lineEnd + 2 + n + 2) return undefined;
      if (n === 0) {
        end = lineEnd + 4;
        break;
      }
      parts.push(buffered.subarray(lineEnd + 2, lineEnd + 2 + n));
      i = lineEnd + 2 + n + 2;
    }
    body = Buffer.concat(parts);
  }
  buffered = buffered.subarray(end);
  return { status, contentType, body };
}

function get(path: string): Promise<Answer> {
  return new Promise((resolve) => {
    waiting = resolve;
    if (!upstream) {
      upstream = connect(upstreamPath!);
      upstream.on('data', (c: Buffer) => {
        buffered = buffered.length ? Buffer.concat([buffered, c]) : c;
        const a = takeAnswer();
        if (a && waiting) {
          const w = waiting;
          waiting = undefined;
          w(a);
        }
      });
    }
    upstream.write(`GET ${path} HTTP/1.1\r\nHost: docker\r\n\r\n`);
  });
}

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    void get(req.url ?? '/').then((a) => {
      res.writeHead(a.status, { 'content-type': a.contentType, 'content-length': a.body.length });
      res.end(a.body);
    });
  });
});
rmSync(listenPath, { force: true });
server.listen(listenPath, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
