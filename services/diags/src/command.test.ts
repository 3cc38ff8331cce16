import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkOptions, DiagsUsageError, parseBytes, runDiags, type DiagsCommandOptions } from './command.js';

let work: string;
let file: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'diags-cmd-'));
  file = join(work, 'calico-diags-h1-20261201T000000Z.tar.gz');
  await writeFile(file, Buffer.alloc(2048, 7));
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** Everything the command says, on any channel, in order. */
function recorder() {
  const said: string[] = [];
  const io = {
    print: (l: string) => said.push(`out: ${l}`),
    json: (v: unknown) => said.push(`json: ${JSON.stringify(v)}`),
    error: (l: string) => said.push(`err: ${l}`),
    progress: (l: string) => said.push(`progress: ${l}`),
  };
  return { said, io };
}

/** A loopback upload server; answer() decides the response and sees the request URL as it arrived. */
type Answer = (req: IncomingMessage, res: ServerResponse) => void;
async function server(answer: Answer): Promise<{ base: string; urls: string[]; s: Server }> {
  const urls: string[] = [];
  const s = createServer((req, res) => {
    urls.push(req.url ?? '');
    req.resume();
    req.on('end', () => answer(req, res));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return { base: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, urls, s };
}
const WARNING = 'warning: uploading over plain http (--insecure):';
const close = (s: Server) => new Promise<void>((r) => (s.closeAllConnections(), s.close(() => r())));

const opts = (url: string, more: Partial<DiagsCommandOptions> = {}): DiagsCommandOptions => ({
  host: 'h1',
  dirs: { run: work, log: work, state: work },
  uploadFile: file,
  uploadUrl: url,
  uploadTries: 2,
  uploadBackoffMs: 1,
  env: {},
  ...more,
});

describe('upload over plain http', () => {
  it('is refused without --insecure, before anything is sent; with it, it goes with a warning', async () => {
    const srv = await server((_req, res) => res.writeHead(201).end());
    try {
      const url = `${srv.base}/up`;
      const refused = recorder();
      await expect(runDiags(opts(url), refused.io)).rejects.toThrow(DiagsUsageError);
      await expect(runDiags(opts(url), refused.io)).rejects.toThrow(
        `upload URL "${url}" is plain http: the archive would travel unencrypted; use https, or --insecure to send it`,
      );
      expect(srv.urls).toEqual([]);
      // The control: the same command with --insecure reaches the server.
      const allowed = recorder();
      expect(await runDiags(opts(url, { insecure: true }), allowed.io)).toBe(0);
      expect(srv.urls).toEqual(['/up']);
      expect(allowed.said).toContain(`err: ${WARNING} ${url} and the archive travel unencrypted`);
      expect(allowed.said).toContain(`out: url: ${url}`);
    } finally {
      await close(srv.s);
    }
  });
  it('is not refused when nothing is uploaded, nor over https', () => {
    const env = { CALICO_DIAGS_UPLOAD_URL: 'http://x/' };
    const dirs = { run: '', log: '', state: '' };
    expect(() => checkOptions({ host: 'h1', dirs, env })).toThrow('is plain http');
    expect(checkOptions({ host: 'h1', dirs, env, noUpload: true }).url).toBe('http://x/');
    expect(checkOptions(opts('https://127.0.0.1:1/up')).url).toBe('https://127.0.0.1:1/up');
  });
  it('names the URL masked when it refuses it', () => {
    const masked = 'u:[redacted]@x/up?sig=[redacted]';
    expect(() => checkOptions(opts('http://u:pw@x/up?sig=abc'))).toThrow(`upload URL "http://${masked}" is plain http`);
    expect(() => checkOptions(opts('ftp://u:pw@x/up?sig=abc'))).toThrow(`upload URL "ftp://${masked}": http or https`);
  });
});

describe('the upload URL is shown masked', () => {
  const SIG = 'c2lnbmF0dXJlLXZhbHVl';
  const PW = 'pa55word';
  it('in progress, errors, the retry command and the JSON report; the server got the real URL and echoed it', async () => {
    const srv = await server((req, res) => res.writeHead(503).end(`cannot store http://127.0.0.1${req.url}`));
    try {
      const url = `${srv.base.replace('//', `//diag:${PW}@`)}/up?sv=2022-11-02&sp=cw&sig=${SIG}`;
      const shown = `${srv.base.replace('//', '//diag:[redacted]@')}/up?sv=2022-11-02&sp=cw&sig=[redacted]`;
      const text = recorder();
      expect(await runDiags(opts(url, { insecure: true }), text.io)).toBe(6);
      const json = recorder();
      expect(await runDiags(opts(url, { insecure: true, json: true }), json.io)).toBe(6);
      // The control: the secret did travel, to the server only.
      expect(srv.urls).toEqual(Array(4).fill(`/up?sv=2022-11-02&sp=cw&sig=${SIG}`));
      const said = [...text.said, ...json.said].join('\n');
      expect(said).not.toContain(SIG);
      expect(said).not.toContain(PW);
      expect(text.said).toContain(`progress: uploading 2.0 kB to ${shown} (PUT, try 1/2)…`);
      expect(text.said).toContain(`err: ${WARNING} ${shown} and the archive travel unencrypted`);
      const refusal =
        'HTTP 503 Service Unavailable: cannot store http://127.0.0.1/up?sv=2022-11-02&sp=cw&sig=[redacted]';
      expect(text.said).toContain(`err: upload failed after 2 tries: ${refusal}`);
      expect(text.said).toContain(
        `err: the archive is kept at ${file}; to retry the upload: ` +
          `calicoctl diags --upload-file=${file} --upload-url='${shown}' --insecure` +
          " (with the URL's [redacted] values filled in)",
      );
      type Report = { upload: { retry: string; tries: { error: string }[] } };
      const report = JSON.parse(json.said.find((l) => l.startsWith('json: '))!.slice(6)) as Report;
      expect(report.upload.retry).toContain(`--upload-url='${shown}'`);
      expect(report.upload.tries.map((t) => t.error)).toEqual([refusal, refusal]);
    } finally {
      await close(srv.s);
    }
  });
  it('in the result line, the upload URL and a URL the server answered alike', async () => {
    const srv = await server((req, res) =>
      req.url!.startsWith('/named')
        ? res.writeHead(201, { location: '/d/1?sig=dl-sig-1' }).end()
        : res.writeHead(201).end(),
    );
    try {
      const r = recorder();
      expect(await runDiags(opts(`${srv.base}/up?sig=${SIG}`, { insecure: true }), r.io)).toBe(0);
      expect(r.said).toContain(`out: url: ${srv.base}/up?sig=[redacted]`);
      expect(await runDiags(opts(`${srv.base}/named?sig=${SIG}`, { insecure: true, json: true }), r.io)).toBe(0);
      expect(r.said.join('\n')).not.toContain(SIG);
      expect(r.said.at(-1)).toContain(`"url":"${srv.base}/d/1?sig=[redacted]"`);
    } finally {
      await close(srv.s);
    }
  });
});

describe('parseBytes', () => {
  it.each([
    ['4096', 4096],
    ['1k', 1024],
    ['1KiB', 1024],
    ['256M', 256 * 1024 ** 2],
    ['256mb', 256 * 1024 ** 2],
    ['2G', 2 * 1024 ** 3],
    ['0', undefined],
    ['-1', undefined],
    ['1.5M', undefined],
    ['M', undefined],
    ['1T', undefined],
  ] as const)('%s', (s, want) => expect(parseBytes(s)).toBe(want));
  it('is what --max-host-bytes reads', () => {
    expect(checkOptions(opts('https://x/', { maxHostBytes: '1M' })).maxHostBytes).toBe(1024 * 1024);
    expect(checkOptions(opts('https://x/')).maxHostBytes).toBe(256 * 1024 * 1024);
    const bad = () => checkOptions(opts('https://x/', { maxHostBytes: 'lots' }));
    expect(bad).toThrow('--max-host-bytes=lots: bytes, e.g. 268435456 or 256M');
  });
});
