import { parseArgs } from 'node:util';
import { ClientError, ClientErrorCode } from '@calico/client';
import { API_CLIENT_TLS_FLAG_OPTIONS, API_TLS_FLAG_OPTIONS, ETCD_FLAG_OPTIONS } from '@calico/datastore';
import { DIAGS_COLLECT_FLAG_OPTIONS } from '@calico/diags';
import { PROXY_TLS_FLAG_OPTIONS } from '@calico/node';
import { Context, UsageError } from './context.js';
import { addgroup, addtogroup, removefromgroup, removegroup, showgroups } from './commands/groups.js';
import { rule } from './commands/rules.js';
import { pool } from './commands/pools.js';
import { check } from './commands/check.js';
import { master, node } from './commands/services.js';
import { status } from './commands/status.js';
import { reset } from './commands/reset.js';
import { version } from './commands/version.js';
import { diags } from './commands/diags.js';

export const USAGE = `calicoctl: drive a Calico cluster

Services (run on each host; --runtime=process runs them here, supervised):
  calicoctl master --ip=<IP> [--listen=<host:port>] [--gc-dead-hosts-after=<duration>]
                   [--tls-cert=<f> --tls-key=<f> [--tls-ca=<f>]] | calicoctl master stop
                   --gc-dead-hosts-after: remove a host down that long (e.g. 7d); off by default
                   --tls-*: the API serves https; a client certificate of --tls-ca authenticates
  calicoctl node --ip=<IP> [--ip6=<IP6>] [--as=<AS>] [--docker=<upstream>]
                 [--proxy-listen=<addr:port>|unix:///path ...] [--log-dir=<dir>]
                 [--tlsverify --tlscacert=<f> --tlscert=<f> --tlskey=<f>] [--insecure-listen]
                 [--tls-cert=<f> --tls-key=<f> [--tls-ca=<f>]] | calicoctl node stop
                 --proxy-listen: tcp://host:port, host:port or unix:///path, repeatable
                 (127.0.0.1:2375); off loopback it needs --tlsverify, or --insecure-listen
                 --tlsverify/--tlscacert/--tlscert/--tlskey: the proxy's TLS, as dockerd's
                 --tls-*: this host's diags service serves https, as the master's API
  calicoctl node remove <HOSTNAME> [--remove-endpoints]
                                    forget a host that is down (refused while it is up); with
                                    --remove-endpoints also its workloads, their memberships
                                    and address reservations
  calicoctl status                  this host's services, BGP sessions and endpoints; every
                                    host, up or DOWN
  calicoctl reset                   remove everything Calico made on this host

Groups and rules:
  calicoctl addgroup <NAME>         calicoctl removegroup <NAME>
  calicoctl showgroups [--detailed]
  calicoctl addtogroup <CONTAINER> <GROUP>
  calicoctl removefromgroup <CONTAINER> <GROUP>
  calicoctl rule add <GROUP> inbound|outbound (--group=<G>|--cidr=<CIDR>) [--protocol=<P>] [--port=<N>]
  calicoctl rule remove <GROUP> inbound|outbound <N>
  calicoctl rule show <GROUP>
  calicoctl pool add <CIDR> | pool remove <CIDR> | pool show
  calicoctl check <SRC> <DST> [--protocol=<P>] [--port=<N>]
  calicoctl diags [--cluster] [--upload-url=<URL> [--insecure]] [--no-upload] [--output=<dir>]
                                    collect this host's (or every host's) state into a .tar.gz
  calicoctl version

Every command: --etcd=<host:port,…> (else ETCD_ENDPOINTS, ETCD_AUTHORITY, 127.0.0.1:2379),
--etcd-ca/--etcd-cert/--etcd-key, --hostname=<NAME> (else CALICO_HOSTNAME), --json,
--api-token-file=<file> (else CALICO_API_TOKEN_FILE, /etc/calico/api-token): the cluster API token,
made by calico-master, sent to the master API and to every host's diags service;
--api-ca=<file> (else CALICO_API_CA_FILE): the CA that verifies an https master and diags services;
--api-cert/--api-key=<file> (else CALICO_API_CERT_FILE/CALICO_API_KEY_FILE): a client certificate
of their CA, which authenticates without the token.
A container is a full id, a unique id prefix or a name, on any host (a full id or an endpoint id on
this host is found in this host's keys alone).`;

/** Exit codes: 0 ok, 1 a "no" answer (check denied, node not running) or an internal error, 2 usage, 3+ see ClientErrorCode. */
export async function run(
  argv: string[],
  ctxFactory: (flags: ConstructorParameters<typeof Context>[0]) => Context = (f) => new Context(f),
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        ...ETCD_FLAG_OPTIONS,
        hostname: { type: 'string' },
        'api-token-file': { type: 'string' },
        ...API_CLIENT_TLS_FLAG_OPTIONS,
        ...API_TLS_FLAG_OPTIONS,
        json: { type: 'boolean' },
        detailed: { type: 'boolean' },
        ip: { type: 'string' },
        ip6: { type: 'string' },
        as: { type: 'string' },
        runtime: { type: 'string' },
        docker: { type: 'string' },
        'proxy-listen': { type: 'string', multiple: true },
        ...PROXY_TLS_FLAG_OPTIONS,
        listen: { type: 'string' },
        'log-dir': { type: 'string' },
        'run-dir': { type: 'string' },
        'state-dir': { type: 'string' },
        group: { type: 'string' },
        cidr: { type: 'string' },
        protocol: { type: 'string' },
        port: { type: 'string' },
        ...DIAGS_COLLECT_FLAG_OPTIONS,
        'remove-endpoints': { type: 'boolean' },
        'gc-dead-hosts-after': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    process.stderr.write(`calicoctl: ${(e as Error).message}\nsee: calicoctl --help\n`);
    return 2;
  }
  const { values: o, positionals } = parsed;
  const [cmd, ...args] = positionals;
  if (o.help || !cmd || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return cmd || o.help ? 0 : 2;
  }
  const ctx = ctxFactory({
    etcd: o.etcd,
    etcdCa: o['etcd-ca'],
    etcdCert: o['etcd-cert'],
    etcdKey: o['etcd-key'],
    json: o.json,
    hostname: o.hostname,
    apiTokenFile: o['api-token-file'],
    apiCa: o['api-ca'],
    apiCert: o['api-cert'],
    apiKey: o['api-key'],
  });
  const nf = {
    ip: o.ip,
    ip6: o.ip6,
    as: o.as,
    runtime: o.runtime,
    docker: o.docker,
    proxyListen: o['proxy-listen'],
    tlsverify: o.tlsverify,
    tls: o.tls,
    tlscacert: o.tlscacert,
    tlscert: o.tlscert,
    tlskey: o.tlskey,
    insecureListen: o['insecure-listen'],
    logDir: o['log-dir'],
    runDir: o['run-dir'],
    stateDir: o['state-dir'],
    removeEndpoints: o['remove-endpoints'],
  };
  try {
    switch (cmd) {
      case 'addgroup':
        return await addgroup(ctx, args);
      case 'removegroup':
        return await removegroup(ctx, args);
      case 'showgroups':
        return await showgroups(ctx, args, o.detailed === true);
      case 'addtogroup':
        return await addtogroup(ctx, args);
      case 'removefromgroup':
        return await removefromgroup(ctx, args);
      case 'rule':
        return await rule(ctx, args, { group: o.group, cidr: o.cidr, protocol: o.protocol, port: o.port });
      case 'pool':
        return await pool(ctx, args);
      case 'check':
        return await check(ctx, args, { protocol: o.protocol, port: o.port });
      case 'node':
        return await node(ctx, args, { ...nf, tlsCert: o['tls-cert'], tlsKey: o['tls-key'], tlsCa: o['tls-ca'] });
      case 'master':
        return await master(ctx, args, {
          ...nf,
          listen: o.listen,
          gcDeadHostsAfter: o['gc-dead-hosts-after'],
          tlsCert: o['tls-cert'],
          tlsKey: o['tls-key'],
          tlsCa: o['tls-ca'],
        });
      case 'status':
        return await status(ctx, args, nf);
      case 'reset':
        return await reset(ctx, args, nf);
      case 'version':
        return await version(ctx);
      case 'diags':
        return await diags(ctx, args, {
          docker: nf.docker,
          runDir: nf.runDir,
          logDir: nf.logDir,
          stateDir: nf.stateDir,
          output: o.output,
          uploadUrl: o['upload-url'],
          uploadMethod: o['upload-method'],
          noUpload: o['no-upload'],
          uploadFile: o['upload-file'],
          cluster: o.cluster,
          hostTimeout: o['host-timeout'],
          maxHostBytes: o['max-host-bytes'],
          insecure: o.insecure,
        });
      default:
        throw new UsageError(`unknown command "${cmd}"; see: calicoctl --help`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`calicoctl: ${e.message}\n`);
      return 2;
    }
    if (e instanceof ClientError) {
      process.stderr.write(`calicoctl: ${e.message}\n`);
      return ClientErrorCode[e.code].exit;
    }
    process.stderr.write(`calicoctl: ${(e as Error).message}\n`);
    return 1;
  } finally {
    ctx.close();
  }
}
