import { describe, expect, it } from 'vitest';
import { plumbScript } from './plumber.js';

describe('plumbScript', () => {
  it("programs the host routes with the node's kernel protocol, the only routes BIRD exports", () => {
    const addrs = ['198.19.0.2', 'fd00:198:19::2'];
    const script = plumbScript({ endpointId: '0123456789abcdef', pid: 42, addrs, mac: '02:00:00:00:00:01' });
    const hostBatch = script.split('\n').find((l) => l.includes('| ip -batch -') && !l.includes('nsenter'));
    expect(hostBatch).toBe(
      "printf 'link set cali0123456789a up\\nroute replace 198.19.0.2/32 dev cali0123456789a proto 80\\n" +
        "route replace fd00:198:19::2/128 dev cali0123456789a proto 80\\n' | ip -batch -",
    );
  });

  it('plumbs an IPv4 workload with one ip on the host and one inside, sysctls before eth0 comes up', () => {
    const script = plumbScript({
      endpointId: '0123456789abcdef',
      pid: 42,
      addrs: ['198.19.0.2'],
      mac: '02:00:00:00:00:01',
    });
    const lines = script.split('\n');
    expect(lines[1]).toBe('[ ! -e /sys/class/net/cali0123456789a ] || ip link del cali0123456789a 2>/dev/null || true');
    expect(lines[2]).toBe(
      "printf 'link add cali0123456789a address ee:ee:ee:ee:ee:ee type veth peer name eth0 address 02:00:00:00:00:01 netns 42\\n" +
        "link set cali0123456789a up\\nroute replace 198.19.0.2/32 dev cali0123456789a proto 80\\n' | ip -batch -",
    );
    const inside = lines.findIndex((l) => l.includes('nsenter'));
    expect(inside).toBe(lines.length - 1);
    expect(lines[inside]).toBe(
      "printf 'addr replace 198.19.0.2/32 dev eth0\\nlink set eth0 up\\nroute replace default dev eth0\\n' | nsenter --net=/proc/42/ns/net ip -batch -",
    );
    expect(lines.slice(3, inside)).toEqual([
      'echo 1 > /proc/sys/net/ipv4/conf/cali0123456789a/proxy_arp',
      'echo 0 > /proc/sys/net/ipv4/neigh/cali0123456789a/proxy_delay',
      'echo 1 > /proc/sys/net/ipv4/conf/cali0123456789a/forwarding',
      'echo 1 > /proc/sys/net/ipv4/conf/cali0123456789a/rp_filter',
    ]);
  });

  it("sets an IPv6 workload's sysctls before its host side comes up (no DAD on its link-local)", () => {
    const script = plumbScript({
      endpointId: '0123456789abcdef',
      pid: 42,
      addrs: ['fd00:198:19::2'],
      mac: '02:00:00:00:00:01',
    });
    const lines = script.split('\n');
    const dad = lines.indexOf('echo 0 > /proc/sys/net/ipv6/conf/cali0123456789a/accept_dad');
    const up = lines.findIndex((l) => l.includes('link set cali0123456789a up'));
    expect(lines[2]).toMatch(/^ip link add cali0123456789a /);
    expect(dad).toBeGreaterThan(2);
    expect(up).toBeGreaterThan(dad);
    expect(lines[lines.length - 1]).toContain(
      "nsenter --net=/proc/42/ns/net sh -c 'echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6;",
    );
  });

  it('keeps a veth plumbed before: no delete, no add, the rest written as it is', () => {
    const spec = {
      endpointId: '0123456789abcdef',
      pid: 42,
      addrs: ['198.19.0.2', 'fd00:198:19::2'],
      mac: '02:00:00:00:00:01',
    };
    const full = plumbScript(spec).split('\n');
    const kept = plumbScript(spec, '/proc/sys', { keep: true }).split('\n');
    expect(kept.filter((l) => /link (del|add)/.test(l))).toEqual([]);
    expect(full.filter((l) => /link (del|add)/.test(l))).toHaveLength(2);
    const hostBatch = "printf 'link set cali0123456789a up\\n";
    expect(kept).toEqual(
      full
        .filter((l) => !/link (del|add)/.test(l))
        .map((l) => l.replace(hostBatch, "printf 'neigh flush dev cali0123456789a\\nlink set cali0123456789a up\\n")),
    );
  });
});
