import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from '@calico/log';
import type { Interceptor, InterceptContext, UpstreamResponse } from './server.js';
import { ProxyError } from './errors.js';
import { encodePathBytes } from './route.js';
import { rewriteInspect } from './inspectRewrite.js';
import { calicoIpFromEnv, reservedAddressRefusal, type ReservedAddresses } from '../workload/calicoIp.js';
import {
  LABELS,
  checkNetworkMode,
  effectiveCommand,
  imageOf,
  needsImageConfig,
  rewriteCreate,
  serialize,
  strSlice,
  type JsonObject,
} from '../workload/createRequest.js';
import { joinedContainer, joinRefusal, joinsCalicoWorkload, type Inspected } from '../workload/sharedNetwork.js';
import { randomMac } from '../plumber/names.js';
import { PENDING_CONTAINER, type AddressRegistry } from '../etcd/addresses.js';
import { workloadLabels, type Workloads } from '../workloads.js';

export interface InterceptDeps {
  host: string;
  waitBinary: string;
  addresses: AddressRegistry;
  workloads: Workloads;
  /** The cluster's own addresses and the pools, which CALICO_IP may not take or leave. */
  reservedAddresses: () => Promise<ReservedAddresses>;
  logger: Logger;
}

function json(r: UpstreamResponse): unknown {
  try {
    return JSON.parse(r.body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Refuses a container that would join the network namespace of a Calico workload (409), asking
 * dockerd who `ref` is, as dockerd will when the container starts.
 */
async function refuseJoiningWorkload(ctx: InterceptContext, ref: string | undefined): Promise<void> {
  if (ref === undefined) return;
  const inspect = async (r: string): Promise<Inspected> => {
    const res = await ctx.call('GET', `/containers/${encodeURIComponent(r)}/json`);
    return { status: res.status, doc: res.status === 200 ? (json(res) as Inspected['doc']) : undefined };
  };
  const v = await joinsCalicoWorkload(inspect, ref);
  if (v.ok) return;
  if (v.kind === 'upstream') {
    throw new ProxyError('UPSTREAM', `calico: dockerd could not say who container ${v.ref} is (status ${v.status})`);
  }
  throw new ProxyError('CONFLICT', joinRefusal(v));
}

/** The network mode of a create (or old start) body, read from the host config dockerd takes. */
function bodyNetworkMode(doc: JsonObject | undefined): unknown {
  if (!doc) return undefined;
  const hc = doc.HostConfig;
  return (hc && typeof hc === 'object' && !Array.isArray(hc) ? (hc as JsonObject) : doc).NetworkMode;
}

/** POST /containers/create with CALICO_IP: validate, reserve, rewrite, forward; undo on refusal. */
function createInterceptor(d: InterceptDeps): Interceptor {
  return {
    name: 'create',
    route: 'create',
    async handle(ctx: InterceptContext) {
      const t0 = performance.now();
      // Refused unless dockerd will read it as the proxy does; what passes may go as it came.
      const { raw, doc = {} } = await ctx.jsonBody();
      const want = calicoIpFromEnv(doc.Env);
      if (!want.ok) throw new ProxyError('BAD_REQUEST', want.message);
      if (want.value.kind === 'none') {
        // dockerd resolves the name again at start, which checks again.
        await refuseJoiningWorkload(ctx, joinedContainer(bodyNetworkMode(doc)));
        return ctx.reply(await ctx.forward(raw));
      }
      const netErr = checkNetworkMode(doc);
      if (netErr) throw new ProxyError('BAD_REQUEST', netErr);

      let imageCfg = { Entrypoint: null as string[] | null, Cmd: null as string[] | null };
      if (needsImageConfig(doc)) {
        const image = imageOf(doc);
        if (!image) return ctx.reply(await ctx.forward(raw));
        const r = await ctx.call('GET', `/images/${encodeURIComponent(image)}/json`);
        // A missing image: forward untouched so the client gets dockerd's own 404 and can pull.
        if (r.status === 404) return ctx.reply(await ctx.forward(raw));
        if (r.status !== 200) return ctx.reply(r);
        const cfg = (json(r) as { Config?: { Entrypoint?: unknown; Cmd?: unknown } } | undefined)?.Config;
        imageCfg = { Entrypoint: strSlice(cfg?.Entrypoint as never), Cmd: strSlice(cfg?.Cmd as never) };
      }
      const command = effectiveCommand(doc, imageCfg);
      if (command.entrypoint.length === 0 && command.cmd.length === 0) {
        throw new ProxyError('BAD_REQUEST', 'No command specified');
      }

      const endpointId = randomUUID();
      const holder = { host: d.host, containerId: PENDING_CONTAINER, endpointId };
      let addr: string;
      let held: string;
      if (want.value.kind === 'auto') {
        try {
          const r = await d.addresses.reserveNext(want.value.family, holder);
          addr = r.addr;
          held = r.value;
        } catch (e) {
          throw new ProxyError('CONFLICT', (e as Error).message);
        }
      } else {
        addr = want.value.addr;
        const refused = reservedAddressRefusal(addr, want.value.family, await d.reservedAddresses());
        if (refused) throw new ProxyError('BAD_REQUEST', refused);
        const r = await d.addresses.reserve(addr, holder);
        if (!r.ok) {
          const who = r.holder ? ` by container ${r.holder.containerId.slice(0, 12)} on host ${r.holder.host}` : '';
          throw new ProxyError('CONFLICT', `CALICO_IP ${addr} is already in use${who}: choose another address`);
        }
        held = r.value;
      }
      const family = want.value.family;
      const mac = randomMac(randomBytes);
      const tReserved = performance.now();
      try {
        const rewritten = rewriteCreate(doc, {
          hostname: d.host,
          endpointId,
          mac,
          addrs: [addr],
          families: [family],
          waitBinary: d.waitBinary,
          command,
        });
        const res = await ctx.forward(serialize(rewritten));
        const tCreated = performance.now();
        const id = (json(res) as { Id?: string } | undefined)?.Id;
        if (res.status !== 201 || !id) {
          await d.addresses.release(addr, held);
          d.logger.info({ addr, status: res.status }, 'dockerd refused the create; address released');
          return ctx.reply(res);
        }
        // Recording the container id on the reservation need not delay the answer: it is
        // queued on the container, so the start (which waits its turn) sees it done.
        d.workloads.remember(id, { endpointId, addrs: [addr], mac }, false);
        void d.workloads
          .serial(id, async () => {
            if (await d.addresses.transfer(addr, held, { host: d.host, containerId: id, endpointId }))
              d.workloads.remember(id, { endpointId, addrs: [addr], mac }, true);
            else
              d.logger.warn(
                { addr, container: id.slice(0, 12) },
                'address reservation changed under us; start will repair it',
              );
          })
          .catch((e: unknown) =>
            d.logger.warn(
              { addr, container: id.slice(0, 12), err: String(e) },
              'could not record the container on its reservation yet; start will repair it',
            ),
          );
        const ms = {
          reserve: +(tReserved - t0).toFixed(1),
          dockerd: +(tCreated - tReserved).toFixed(1),
          total: +(performance.now() - t0).toFixed(1),
        };
        d.logger.info(
          { container: id.slice(0, 12), endpoint: endpointId, addr, mac, ms },
          'container created with a Calico address; it is networked when it starts',
        );
        ctx.reply(res);
      } catch (e) {
        await d.addresses.release(addr, held).catch(() => undefined);
        throw e;
      }
    },
  };
}

/** Old clients (API < 1.24) send a host config on start: the same network rules apply there. */
function checkStartBody(doc: JsonObject | undefined): void {
  if (!doc) return;
  const msg = checkNetworkMode(doc);
  if (msg) throw new ProxyError('BAD_REQUEST', msg);
}

/**
 * start/restart of one of our containers: dockerd starts it (its workload waits for eth0),
 * the plumber networks it, and only then does the client get its answer. If networking
 * fails the container is stopped, not deleted, and the client is told why.
 */
function startInterceptor(d: InterceptDeps, action: 'start' | 'restart'): Interceptor {
  return {
    name: action,
    route: action,
    async handle(ctx: InterceptContext) {
      const id = Buffer.from(ctx.route.params[0]!, 'latin1').toString('utf8');
      let full = id;
      if (!d.workloads.knownLabels(id)) {
        const info = await ctx.call('GET', `/containers/${encodePathBytes(ctx.route.params[0]!)}/json`);
        const c = json(info) as Inspected['doc'];
        const labels = c?.Config?.Labels ?? undefined;
        if (info.status !== 200) return ctx.passThrough();
        if (!workloadLabels(labels, d.host)) {
          // Not ours: it may still join a workload's network, by the mode it was created with or
          // (start, API < 1.24) one its body sets; dockerd resolves the name now, so check now.
          await refuseJoiningWorkload(ctx, joinedContainer(c?.HostConfig?.NetworkMode));
          if (action === 'restart') return ctx.passThrough();
          const { raw, doc } = await ctx.jsonBody();
          await refuseJoiningWorkload(ctx, joinedContainer(bodyNetworkMode(doc)));
          return ctx.reply(await ctx.forward(raw));
        }
        full = (json(info) as { Id: string }).Id;
        d.workloads.remember(full, workloadLabels(labels, d.host)!, false);
      }
      const known = d.workloads.knownLabels(full);
      const { raw, doc } = await ctx.jsonBody();
      if (action === 'start') checkStartBody(doc);
      const t0 = performance.now();
      const res = await ctx.forward(raw);
      if (res.status !== 204 && res.status !== 304) return ctx.reply(res);
      const tStarted = performance.now();
      try {
        await d.workloads.ensureRunning(full);
        d.logger.debug(
          {
            container: full.slice(0, 12),
            ms: { dockerd: +(tStarted - t0).toFixed(1), network: +(performance.now() - tStarted).toFixed(1) },
          },
          `${action} held until the network was ready`,
        );
      } catch (e) {
        d.logger.error(
          { container: full.slice(0, 12), err: String(e) },
          'networking failed; stopping the container (not deleting it)',
        );
        await ctx.call('POST', `/containers/${full}/kill`).catch(() => undefined);
        if (known) await d.workloads.markStoppedKnown(full, known).catch(() => undefined);
        throw new ProxyError(
          'INTERNAL',
          `calico: container ${full.slice(0, 12)} was stopped because its network could not be set up: ${(e as Error).message}`,
        );
      }
      ctx.reply(res);
    },
  };
}

/** inspect shows the Calico address where orchestrators look for it. */
function inspectInterceptor(d: InterceptDeps): Interceptor {
  return {
    name: 'inspect',
    route: 'inspect',
    async handle(ctx: InterceptContext) {
      const res = await ctx.forward(Buffer.alloc(0));
      const text = res.status === 200 ? res.body.toString('utf8') : '';
      // Most inspects are of containers that are not ours: answer those without parsing.
      if (!text.includes(d.host) || !text.includes(LABELS.host)) return ctx.reply(res);
      const out = rewriteInspect(text, d.host);
      ctx.reply(res, out === undefined ? undefined : Buffer.from(out));
    },
  };
}

/**
 * Bodies of calls that can change a container's privileges: read as dockerd reads them (or
 * refused), then forwarded as sent.
 */
function bodyGuard(route: 'exec-create' | 'update'): Interceptor {
  return {
    name: route,
    route,
    async handle(ctx: InterceptContext) {
      const { raw } = await ctx.jsonBody();
      ctx.reply(await ctx.forward(raw));
    },
  };
}

/** A container name or id as dockerd's GetContainer takes it (one leading "/" allowed). */
const CONTAINER_REF = /^\/?[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/**
 * network connect/disconnect: a Calico workload (a container with our host label, whoever put
 * it there) keeps the one network Calico gave it: a second network would be a way around its
 * groups, and a disconnect a way to another network mode. Other containers are forwarded,
 * named by the id that was checked, so a rename in between cannot redirect the call.
 */
function networkGuard(route: 'network-connect' | 'network-disconnect'): Interceptor {
  return {
    name: route,
    route,
    async handle(ctx: InterceptContext) {
      const { raw, doc } = await ctx.jsonBody();
      const ref = doc?.Container;
      if (typeof ref !== 'string' || ref === '') return ctx.reply(await ctx.forward(raw));
      if (!CONTAINER_REF.test(ref)) {
        throw new ProxyError('BAD_REQUEST', `calico: ${JSON.stringify(ref)} is not a container name or id`);
      }
      const info = await ctx.call('GET', `/containers/${ref.replace(/^\//, '')}/json`);
      // No such container (dockerd's own 404), or dockerd failing: answered as dockerd answered.
      if (info.status !== 200) return ctx.reply(info);
      const c = json(info) as { Id?: string; Config?: { Labels?: Record<string, string> | null } } | undefined;
      if (!c?.Id) throw new ProxyError('UPSTREAM', `calico: dockerd's inspect of container ${ref} has no Id`);
      const network = Buffer.from(ctx.route.params[0]!, 'latin1').toString('utf8');
      if (c.Config?.Labels?.[LABELS.host] !== undefined) {
        const what =
          route === 'network-connect'
            ? `connecting it to network ${network} would give it a second network`
            : `disconnecting it from network ${network} would change its network`;
        throw new ProxyError(
          'CONFLICT',
          `calico: container ${ref} is a Calico workload: ${what}, a way around its groups; ` +
            'Calico gives a workload its only network',
        );
      }
      ctx.reply(await ctx.forward(serialize({ ...doc, Container: c.Id })));
    },
  };
}

/**
 * A build's RUN steps run in containers with the build's network mode (the classic builder takes
 * `container:<X>`): the same refusal as a create's. The context streams through unread.
 */
function buildGuard(): Interceptor {
  return {
    name: 'build',
    route: 'build',
    async handle(ctx: InterceptContext) {
      // dockerd takes the first value; every one is checked, so no reading of the query can differ.
      for (const mode of new URLSearchParams(ctx.route.query.replace(/^\?/, '')).getAll('networkmode')) {
        await refuseJoiningWorkload(ctx, joinedContainer(mode));
      }
      ctx.passThrough();
    },
  };
}

export function nodeInterceptors(d: InterceptDeps): Interceptor[] {
  return [
    createInterceptor(d),
    startInterceptor(d, 'start'),
    startInterceptor(d, 'restart'),
    inspectInterceptor(d),
    bodyGuard('exec-create'),
    bodyGuard('update'),
    networkGuard('network-connect'),
    networkGuard('network-disconnect'),
    buildGuard(),
  ];
}
