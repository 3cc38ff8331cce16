/**
 * Secrets never leave the host in an archive. Three layers, because no single one is enough:
 * structured redaction where we know the shape (docker inspect, the keyspace, state JSON),
 * pattern redaction for free text (command lines, logs, configs), and a last pass that scrubs
 * every secret value found by the first layer from everything else (a password seen in a
 * container's Env is also removed from a log line that happened to print it).
 */

export const REDACTED = '[redacted]';

/** Word-ish parts of a name: "etcdKeyFile", "ETCD_KEY_FILE" and "etcd-key-file" all give etcd/key/file. */
function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

// Long, unambiguous words are matched anywhere in the name (DBPASSWORD, githubtoken).
const SECRET_SUBSTRINGS = [
  'passw',
  'passphrase',
  'token',
  'secret',
  'credential',
  'apikey',
  'privatekey',
  'authorization',
  'cookie',
];
// Short ones only as whole words, or "key" at the end (SSHKEY): ETCD_AUTHORITY, "passive" and "keyspace" stay.
const SECRET_WORDS = new Set(['pass', 'pwd', 'key', 'keys', 'keyfile', 'creds', 'cred', 'auth', 'bearer']);

/** Does a variable, flag, field or key name look like it holds a secret? Case-insensitive. */
export function isSecretName(name: string): boolean {
  const lower = name.toLowerCase();
  if (SECRET_SUBSTRINGS.some((s) => lower.includes(s))) return true;
  const w = words(name);
  if (w.some((x) => SECRET_WORDS.has(x))) return true;
  const last = w[w.length - 1] ?? '';
  return /keys?$|keyfile$/.test(last);
}

// A PEM private key up to its END line; a cut one up to where its base64 stops. The body may be
// raw or escaped inside a JSON string ("\n" as two characters, "\\n" one level deeper).
const PEM_BODY = String.raw`(?:[A-Za-z0-9+/=\s]|\\+[nrt]|(?:Proc-Type|DEK-Info|Comment):[^\n\\"]*)*`;
const PEM_PRIVATE = new RegExp(
  String.raw`-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY( BLOCK)?-----(?:[\s\S]*?-----END \1PRIVATE KEY\2-----|${PEM_BODY})`,
  'g',
);
// The same key base64-encoded once more (a Kubernetes-style secret): "-----BEGIN " encodes to "LS0tLS1CRUdJTi".
const PEM_BASE64 = /LS0tLS1CRUdJTi[A-Za-z0-9+/]*={0,2}/g;
// --flag=value, --flag value (value not starting with "-"), "--flag","value" in a JSON argv; quoted or bare; stops at JSON punctuation.
const FLAG = /(?<![\w-])(--?[A-Za-z][\w.-]*)(=|[ \t]+(?=[^\s-])|"\s*,\s*"(?=[^-]))("[^"]*"|'[^']*'|[^\s"',;)\]}]+)/g;
// NAME=value as in an environment or a shell line.
const ASSIGN = /(?<![\w.-])([A-Za-z_][\w.-]*)=("[^"]*"|'[^']*'|[^\s"',;&)\]}]*)/g;
// "name": "value" in JSON text (log lines, configs).
const JSON_PAIR = /"([^"\\]{1,100})"(\s*:\s*)"((?:[^"\\]|\\.)*)"/g;
// scheme://user:password@ (the user may be empty: redis://:pw@host); the password runs to the last "@" before the path.
// The "//" may be JSON-escaped as "\/\/" (encoders that escape slashes).
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:(?:\/\/|\\\/\\\/)[^\s/:@"'?#]*):([^\s/"'?#]+)@/gi;
// http(s)://token@host: a user name alone over http is a token (git and API clients put one there).
const URL_TOKEN_USER = /\b(https?:(?:\/\/|\\\/\\\/))([^\s/:@"'?#]+)@(?=[A-Za-z0-9[])/gi;
// user:password@host:port with no scheme (proxy settings, DSNs); not an image's name:tag@sha256:…
const BARE_USERINFO = /(?<![\w.:/@-])([A-Za-z0-9._%+-]+):([^\s/@"':]+)@(?!sha\d+:)(?=[A-Za-z0-9[])/g;
// ?name=value, &name=value, #name=value: a URL's query or fragment, or a path with a query in a log line.
const QUERY_PARAM = /([?&#])([A-Za-z0-9_.%~-]+)=([^\s&#"'<>\\]*)/g;
// Query parameters that carry a signature or a credential though their name alone would not say so:
// Azure SAS `sig`, S3 `X-Amz-Signature`, GCS `X-Goog-Signature`, OAuth `code`. SAS `se`, `sp`, `sv` and the like stay.
const SECRET_QUERY_NAMES = new Set([
  'sig',
  'signature',
  'code',
  'key',
  'apikey',
  'api_key',
  'access_token',
  'password',
  'pass',
  'pwd',
  'auth',
  'session',
]);
// The scheme goes too: "Basic" alone would be a hint, and NAME=value below must not split it off.
const AUTH_HEADER =
  /\b(authorization|proxy-authorization)(["']?\s*[:=]\s*["']?)(?:(?:basic|bearer|token|digest|negotiate)\s+)?[^\s"',;]+/gi;
// BIRD's `password "…";` in a protocol, and the like.
const QUOTED_AFTER_WORD = /\b(password|passphrase|secret|token)(\s+)("[^"]*"|'[^']*')/gi;

/** Is a URL query (or fragment) parameter secret? A secret-looking name, or a signed URL's signature. */
export function isSecretQueryParam(name: string): boolean {
  let n = name;
  try {
    n = decodeURIComponent(name);
  } catch {
    // a stray "%": judge the name as written
  }
  const lower = n.toLowerCase();
  return isSecretName(n) || SECRET_QUERY_NAMES.has(lower) || words(n).some((w) => w === 'signature' || w === 'sig');
}

/**
 * Masks the secrets of every URL in a text: the password in `user:password@` (with a scheme or
 * without), a user name alone in http(s)://token@, and the values of
 * secret query or fragment parameters (names kept). Used for archives and for every URL diags prints.
 */
export function maskUrl(text: string): string {
  return text
    .replace(URL_USERINFO, `$1:${REDACTED}@`)
    .replace(URL_TOKEN_USER, (m, scheme: string, user: string) =>
      user.startsWith('[redacted') ? m : `${scheme}${REDACTED}@`,
    )
    .replace(BARE_USERINFO, (m, user: string, pw: string) => (pw.startsWith('[redacted') ? m : `${user}:${REDACTED}@`))
    .replace(QUERY_PARAM, (m, sep: string, name: string, v: string) =>
      v && !v.startsWith('[redacted') && isSecretQueryParam(name) ? `${sep}${name}=${REDACTED}` : m,
    );
}

/** A URL's secret values (password, secret query values), as written and decoded, to scrub from text echoing it. */
export function urlSecrets(url: string): string[] {
  const out = new Set<string>();
  const add = (v: string) => {
    if (!v) return;
    out.add(v);
    try {
      out.add(decodeURIComponent(v));
    } catch {
      // not percent-encoded after all
    }
  };
  for (const m of url.matchAll(URL_USERINFO)) add(m[2]!);
  for (const m of url.matchAll(URL_TOKEN_USER)) add(m[2]!);
  for (const m of url.matchAll(QUERY_PARAM)) if (isSecretQueryParam(m[2]!)) add(m[3]!);
  return [...out];
}

function redactBase64Pem(b64: string): string {
  const text = Buffer.from(b64, 'base64').toString('latin1');
  return /^-----BEGIN [A-Z0-9 ]*PRIVATE KEY/.test(text) ? '[redacted private key]' : b64;
}

/**
 * Masks secrets in free text: private keys, secret-looking flags, assignments and JSON fields, URL passwords and
 * query secrets, auth headers.
 */
export function redactText(text: string): string {
  return maskUrl(text.replace(PEM_PRIVATE, `[redacted private key]`).replace(PEM_BASE64, redactBase64Pem))
    .replace(QUOTED_AFTER_WORD, `$1$2"${REDACTED}"`)
    .replace(AUTH_HEADER, `$1$2${REDACTED}`)
    .replace(FLAG, (m, flag: string, sep: string, v: string) =>
      isSecretName(flag) && !v.startsWith('[redacted') ? `${flag}${sep}${REDACTED}` : m,
    )
    .replace(ASSIGN, (m, name: string, v: string) =>
      isSecretName(name) && !v.startsWith('[redacted') ? `${name}=${REDACTED}` : m,
    )
    .replace(JSON_PAIR, (m, name: string, sep: string) => (isSecretName(name) ? `"${name}"${sep}"${REDACTED}"` : m));
}

/** Collects the secret values a structured redaction removed, so they can be scrubbed from free text too. */
export type SecretSink = Set<string>;

/** "NAME=value" with a secret-looking NAME: the whole value goes, spaces included (Env entries). */
function redactAssignment(s: string, sink?: SecretSink): string | undefined {
  const m = /^([A-Za-z_][\w.-]*)=([\s\S]*)$/.exec(s);
  if (!m || !isSecretName(m[1]!)) return undefined;
  if (m[2]) sink?.add(m[2]);
  return `${m[1]}=${REDACTED}`;
}

/**
 * Redacts a parsed JSON value: fields with secret-looking names lose their value, every string is
 * redacted as text, "NAME=value" strings (docker's Config.Env) lose the whole value, and in an
 * argv array the element after a bare secret flag ("--etcd-key", "/path") is masked.
 */
export function redactJson(value: unknown, sink?: SecretSink): unknown {
  if (typeof value === 'string') return redactAssignment(value, sink) ?? redactText(value);
  if (Array.isArray(value)) {
    return value.map((v, i) => {
      const prev = value[i - 1];
      if (
        typeof v === 'string' &&
        typeof prev === 'string' &&
        /^--?[A-Za-z][\w.-]*$/.test(prev) &&
        isSecretName(prev)
      ) {
        sink?.add(v);
        return REDACTED;
      }
      return redactJson(v, sink);
    });
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (isSecretName(k) && v !== null && typeof v !== 'boolean' && typeof v !== 'object') {
        if (typeof v === 'string' && v) sink?.add(v);
        out[k] = REDACTED;
      } else out[k] = redactJson(v, sink);
    }
    return out;
  }
  return value;
}

/** JSON text in, redacted pretty JSON out; text that is not JSON is redacted as text. */
export function redactJsonText(text: string, sink?: SecretSink): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return redactText(text);
  }
  return `${JSON.stringify(redactJson(parsed, sink), null, 2)}\n`;
}

/**
 * One etcd key's value as it goes into the dump. The key's last segment decides first
 * (/calico/config/EtcdPassword); a JSON value is redacted field by field; anything else as text.
 */
export function redactKeyspaceValue(key: string, value: string, sink?: SecretSink): string {
  const last = key.split('/').filter(Boolean).pop() ?? '';
  if (isSecretName(last)) {
    if (value) sink?.add(value);
    return REDACTED;
  }
  const t = value.trim();
  if (t.startsWith('{') || t.startsWith('[')) {
    try {
      return JSON.stringify(redactJson(JSON.parse(t), sink));
    } catch {
      // not JSON after all: fall through to text
    }
  }
  return redactText(value);
}

/** docker inspect output (a JSON array of containers); Env entries lose secret values exactly. */
export function redactDockerInspect(text: string, sink?: SecretSink): string {
  return redactJsonText(text, sink);
}

/**
 * Removes known secret values wherever they still appear. Values shorter than 4 characters are
 * left alone: scrubbing "1" or "on" everywhere would destroy the archive, not protect it.
 */
export function scrubSecrets(text: string, secrets: Iterable<string>): string {
  let out = text;
  for (const s of secrets) {
    if (s.length < 4 || s === REDACTED) continue;
    out = out.split(s).join(REDACTED);
  }
  return out;
}

/** Files that must never be archived, whatever directory they sit in: keys and certificates' private halves. */
export function isKeyFile(name: string, head: string): boolean {
  return (
    /\.(key|pem|p12|pfx|jks)$/i.test(name) ||
    /(^|[-_.])(private|secret)/i.test(name.split('/').pop() ?? '') ||
    /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(head)
  );
}
