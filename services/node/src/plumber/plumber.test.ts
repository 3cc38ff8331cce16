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
});
