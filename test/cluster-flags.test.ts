import { describe, expect, it } from 'vitest';

import { CLUSTER_ENV, clusterFromFlags } from '../lib/cluster/flags.js';

describe('serve cluster flags', () => {
  it('builds the cluster option from the flags or the environment; the flag wins', () => {
    expect(clusterFromFlags({}, {})).toBeUndefined();
    expect(clusterFromFlags({}, { [CLUSTER_ENV]: '' })).toBeUndefined();
    expect(clusterFromFlags({}, { [CLUSTER_ENV]: 'redis://r:6379' })).toEqual({ redis: 'redis://r:6379' });
    expect(clusterFromFlags({ cluster: 'redis://a:1', nodeId: 'n-1', advertise: '10.0.0.1:7770' }, { [CLUSTER_ENV]: 'redis://b:2' })).toEqual({
      redis: 'redis://a:1',
      nodeId: 'n-1',
      advertise: '10.0.0.1:7770',
    });
    expect(clusterFromFlags({ advertise: '[::1]:7770' }, { [CLUSTER_ENV]: 'rediss://:pw@r:6380/2' })).toEqual({
      redis: 'rediss://:pw@r:6380/2',
      advertise: '[::1]:7770',
    });
  });

  it('names the flag in every error, and never prints a password', () => {
    const cases: [Parameters<typeof clusterFromFlags>[0], Record<string, string>, string, string][] = [
      [{ cluster: 'http://:hunter2pw@x:1' }, {}, 'ERR_INVALID_ARG_TYPE', '"--cluster"'],
      [{ cluster: 'not a url' }, {}, 'ERR_INVALID_ARG_TYPE', '"--cluster"'],
      [{}, { [CLUSTER_ENV]: 'nope' }, 'ERR_INVALID_ARG_TYPE', `"${CLUSTER_ENV}"`],
      [{ cluster: 'redis://x:1', nodeId: 'bad id' }, {}, 'ERR_INVALID_ARG_VALUE', '"--node-id"'],
      [{ cluster: 'redis://x:1', nodeId: '' }, {}, 'ERR_INVALID_ARG_VALUE', '"--node-id"'],
      [{ cluster: 'redis://x:1', advertise: 'host' }, {}, 'ERR_INVALID_ARG_VALUE', '"--advertise"'],
      [{ cluster: 'redis://x:1', advertise: 'host:0' }, {}, 'ERR_INVALID_ARG_VALUE', '"--advertise"'],
      [{ nodeId: 'n1' }, {}, 'ERR_INVALID_ARG_VALUE', 'needs --cluster'],
      [{ advertise: 'h:1' }, {}, 'ERR_INVALID_ARG_VALUE', 'needs --cluster'],
    ];
    for (const [flags, env, code, text] of cases) {
      let err: (Error & { code?: string }) | undefined;
      try {
        clusterFromFlags(flags, env);
      } catch (e) {
        err = e as Error & { code?: string };
      }
      expect(err, JSON.stringify(flags)).toMatchObject({ code, message: expect.stringContaining(text) });
      expect(err!.message).not.toContain('hunter2pw');
    }
  });
});
