import { access, readFile } from 'node:fs/promises';
import type { Datastore, Syncer } from '@calico/datastore';
import { birdIpKey, calicoRoot } from '@calico/keyspace';
import type { Logger } from '@calico/log';
import { cmdlineNamesFile, stopProcess } from '@calico/proc';
import { bgpInputFrom, bgpKeyFilter, birdView, type BirdView } from './model.js';
import { renderBirdConf } from './render.js';
import {
  BirdConfigRejected,
  birdc,
  installConfig,
  kernelRoutesOfBird,
  reloadBird,
  runBird,
  type BirdPaths,
} from './bird.js';

export interface BgpConfigOptions {
  ds: Datastore;
  host: string;
  paths: BirdPaths;
  logger: Logger;
  /** Quiet time that ends a burst of changes (ms). */
  debounceMs?: number;
  /** Longest a change waits while a burst goes on (ms). */
  maxDelayMs?: number;
  /** Keep BIRD running: start it when it does not answer on its socket. */
  runBird?: boolean;
  /** How often to check that BIRD answers (ms). */
  birdCheckMs?: number;
}

export interface BgpConfigStatus {
  inSync: boolean;
  renders: number;
  installs: number;
  reloads: number;
  birdStarts: number;
  /** Of those, starts in graceful restart recovery (the kernel held routes of an earlier BIRD). */
  birdRecoveries: number;
  lastError: string | null;
  problems: { key: string; errors: string[] }[];
}

/**
 * Keeps bird.conf equal to what etcd says: renders on every change (bursts coalesced),
 * installs only a config that `bird -p -c` accepts and only when its text changed, then asks
 * BIRD to reload. A config BIRD rejects is never installed: the running one stays, and the
 * failure is logged and kept in status() until a good config replaces it.
 */
export class BgpConfigService {
  private syncer: Syncer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private firstChangeAt = 0;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private birdTimer: NodeJS.Timeout | undefined;
  private readonly st: BgpConfigStatus = {
    inSync: false,
    renders: 0,
    installs: 0,
    reloads: 0,
    birdStarts: 0,
    birdRecoveries: 0,
    lastError: null,
    problems: [],
  };

  constructor(private readonly opts: BgpConfigOptions) {}

  status(): BgpConfigStatus {
    return { ...this.st, problems: [...this.st.problems] };
  }

  start(): this {
    this.syncer = this.opts.ds
      .syncer(
        calicoRoot,
        {
          onUpdates: () => this.changed(),
          onStatus: (s) => {
            this.st.inSync = s === 'in-sync';
            if (s === 'in-sync') this.changed();
          },
        },
        { filter: bgpKeyFilter(this.opts.host) },
      )
      .start();
    if (this.opts.runBird) {
      // One check at a time: a hung BIRD makes each take up to the birdc timeout.
      let checking = false;
      const check = () => {
        if (checking) return;
        checking = true;
        void this.ensureBird()
          .catch(() => undefined)
          .finally(() => (checking = false));
      };
      this.birdTimer = setInterval(check, this.opts.birdCheckMs ?? 2_000);
      this.birdTimer.unref();
    }
    return this;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.syncer?.stop();
    if (this.birdTimer) clearInterval(this.birdTimer);
    await this.running;
  }

  /** Resolves once everything received so far is rendered (and installed, if valid). */
  async settled(): Promise<void> {
    await this.syncer?.drain();
    while (this.timer || this.running) {
      if (this.timer) await new Promise((r) => setTimeout(r, 10));
      else await this.running;
    }
  }

  private changed(): void {
    if (this.stopped || !this.syncer?.inSync) return;
    const now = Date.now();
    if (!this.timer) this.firstChangeAt = now;
    else clearTimeout(this.timer);
    const debounce = this.opts.debounceMs ?? 100;
    const wait = Math.max(0, Math.min(debounce, this.firstChangeAt + (this.opts.maxDelayMs ?? 1_000) - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.running) {
        this.again = true;
        return;
      }
      this.running = this.cycle().finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.changed();
        }
      });
    }, wait);
  }

  private async cycle(): Promise<void> {
    const { host, paths, logger } = this.opts;
    const input = bgpInputFrom(this.syncer!.state);
    const problems = [...input.problems].map(([key, errors]) => ({ key, errors }));
    let text: string;
    let view: BirdView;
    try {
      view = birdView(input, host, { logFile: paths.log });
      for (const s of view.skipped) problems.push({ key: birdIpKey(s.host), errors: [s.reason] });
      text = renderBirdConf(view);
      this.st.renders++;
    } catch (e) {
      this.st.lastError = (e as Error).message;
      logger.warn({ err: this.st.lastError }, 'cannot render bird.conf yet; waiting for the next change');
      return;
    } finally {
      this.reportProblems(problems);
    }
    try {
      const installed = await installConfig(paths.config, text);
      if (!installed) return;
      this.st.installs++;
      this.st.lastError = null;
      const counts = { peers: (text.match(/^protocol bgp /gm) ?? []).length, endpointAddrs: view.endpoints.count };
      logger.info({ config: paths.config, ...counts }, 'bird.conf written; asking BIRD to reload it');
    } catch (e) {
      this.st.lastError =
        e instanceof BirdConfigRejected ? e.message : `writing ${paths.config}: ${(e as Error).message}`;
      logger.error({ err: this.st.lastError }, 'new BGP configuration refused; BIRD keeps running the previous one');
      return;
    }
    if (this.opts.runBird) await this.ensureBird();
    const r = await reloadBird(paths.socket);
    if (r.ok) {
      this.st.reloads++;
    } else {
      logger.warn(
        { socket: paths.socket, birdc: r.out },
        'BIRD did not take the reload (not running?); it reads the new file when it starts',
      );
    }
  }

  /** Keeps the problems in status(); logs each once, when it first appears. */
  private reportProblems(problems: { key: string; errors: string[] }[]): void {
    const before = new Set(this.st.problems.map((p) => `${p.key}\n${p.errors.join('\n')}`));
    this.st.problems = problems;
    for (const p of problems) {
      if (before.has(`${p.key}\n${p.errors.join('\n')}`)) continue;
      this.opts.logger.warn(
        { key: p.key, errors: p.errors },
        'BGP key ignored: it does not decode or conflicts; the rest of the config is rendered without it',
      );
    }
  }

  /**
   * BIRD runs as its own daemon (it survives a bgp-config restart, as a real BIRD service would).
   * Whenever it does not answer on its socket, it is started again with the installed config;
   * a BIRD already answering (from an earlier run of this service) is adopted as it is.
   */
  private async ensureBird(): Promise<void> {
    const { paths, logger } = this.opts;
    if (this.stopped) return;
    const alive = await birdc(paths.socket, 'show status');
    if (alive.code === 0 && /Daemon is up and running/.test(alive.out)) return;
    if (alive.timedOut) {
      // A BIRD holds the socket but does not answer: a second one would fight it for the socket and port 179.
      const msg = 'BIRD is running but does not answer on its socket; not starting another, asking again later';
      logger.error({ socket: paths.socket, err: alive.out }, msg);
      return;
    }
    if (
      !(await access(paths.config).then(
        () => true,
        () => false,
      ))
    )
      return;
    // Routes of an earlier BIRD still in the kernel (it crashed, or stopped with persist): the
    // new one recovers them gracefully instead of pruning them before its peers are back.
    const kept = await kernelRoutesOfBird().catch((e: unknown) => {
      logger.warn(
        { err: (e as Error).message },
        'cannot read the kernel routes; BIRD starts without graceful restart recovery',
      );
      return 0;
    });
    const argv = ['bird', '-c', paths.config, '-s', paths.socket, '-P', paths.pid, ...(kept > 0 ? ['-R'] : [])];
    const r = await runBird(argv);
    this.st.birdStarts++;
    if (kept > 0) this.st.birdRecoveries++;
    const where = { config: paths.config, socket: paths.socket, pidFile: paths.pid };
    if (r.code !== 0) logger.error({ out: r.out }, 'BIRD failed to start; trying again shortly');
    else if (kept > 0) {
      logger.info(
        { ...where, kernelRoutes: kept },
        'BIRD was not running; started it in graceful restart recovery: the kernel keeps its routes until the peers have sent theirs again',
      );
    } else logger.info(where, 'BIRD was not running; started it');
  }

  /** Stops the BIRD this host runs: the pid in its pid file, if that process is BIRD of this file. */
  async stopBird(): Promise<void> {
    const file = this.opts.paths.pid;
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (pid) await stopProcess({ pid }, { graceMs: 5_000, cmdlineMatches: cmdlineNamesFile(file) });
  }
}
