import { describe, expect, it } from 'vitest';
import type { IpAssignment } from '@calico/keyspace';
import { reservationRepairs, type ListedContainer } from './reservations.js';

const E1 = '11111111-1111-4111-8111-111111111111';
const E2 = '22222222-2222-4222-8222-222222222222';
const C1 = 'c1'.repeat(32);
const C2 = 'c2'.repeat(32);
const GONE = 'ee'.repeat(32);

const held = (entries: [string, IpAssignment][]) => new Map(entries);
const created = (id: string, endpointId: string, addrs: string[]): ListedContainer => ({
  id,
  workload: { endpointId, addrs },
});

describe('reservationRepairs', () => {
  it('gives a pending reservation to the container dockerd created for it', () => {
    const r = reservationRepairs('h1', held([['198.19.0.1', { host: 'h1', containerId: 'pending', endpointId: E1 }]]), [
      created(C1, E1, ['198.19.0.1']),
    ]);
    expect(r).toEqual([
      {
        action: 'confirm',
        addr: '198.19.0.1',
        holder: { host: 'h1', containerId: 'pending', endpointId: E1 },
        containerId: C1,
      },
    ]);
  });

  it('releases a pending reservation whose create never reached dockerd', () => {
    const holder = { host: 'h1', containerId: 'pending', endpointId: E1 };
    const r = reservationRepairs('h1', held([['198.19.0.1', holder]]), [created(C2, E2, ['198.19.0.2'])]);
    expect(r).toEqual([
      { action: 'release', addr: '198.19.0.1', holder, why: 'pending for a container that dockerd never created' },
    ]);
  });

  it('releases a pending reservation that no container holds for that address, and one without an endpoint', () => {
    const other = { host: 'h1', containerId: 'pending', endpointId: E1 };
    const bare = { host: 'h1', containerId: 'pending' };
    // The container of E1 has another address: this one is no promise to it.
    const r = reservationRepairs(
      'h1',
      held([
        ['198.19.0.9', other],
        ['198.19.0.8', bare],
      ]),
      [created(C1, E1, ['198.19.0.1'])],
    );
    expect(r.map((x) => [x.action, x.addr])).toEqual([
      ['release', '198.19.0.9'],
      ['release', '198.19.0.8'],
    ]);
  });

  it('releases a reservation naming a container that is gone, and keeps those of containers that exist, running or not', () => {
    const gone = { host: 'h1', containerId: GONE, endpointId: E1 };
    const r = reservationRepairs(
      'h1',
      held([
        ['198.19.0.1', gone],
        ['198.19.0.2', { host: 'h1', containerId: C2, endpointId: E2 }],
        ['198.19.0.3', { host: 'h1', containerId: C1, endpointId: E1 }],
      ]),
      // C1's labels are not ours (someone edited them): it still exists, so its address stays.
      [created(C2, E2, ['198.19.0.2']), { id: C1, workload: null }],
    );
    expect(r).toEqual([{ action: 'release', addr: '198.19.0.1', holder: gone, why: 'its container is gone' }]);
  });

  it("leaves other hosts' reservations alone, pending or not", () => {
    const r = reservationRepairs(
      'h1',
      held([
        ['198.19.0.1', { host: 'h2', containerId: 'pending', endpointId: E1 }],
        ['198.19.0.2', { host: 'h2', containerId: GONE, endpointId: E2 }],
      ]),
      [],
    );
    expect(r).toEqual([]);
  });

  it('is empty when every reservation names a listed container', () => {
    const r = reservationRepairs('h1', held([['fd00:198:19::1', { host: 'h1', containerId: C1, endpointId: E1 }]]), [
      created(C1, E1, ['fd00:198:19::1']),
    ]);
    expect(r).toEqual([]);
  });
});
