import { describe, expect, it } from 'vitest';

import { ServerList, parseServerList, splitServerFlag } from '../lib/peer/server-list.js';

describe('server list', () => {
  it('takes one server or a list, in every form the option allows', () => {
    expect(parseServerList('a:7770')).toEqual([{ host: 'a', port: 7770 }]);
    expect(parseServerList({ host: 'a', port: 1 })).toEqual([{ host: 'a', port: 1 }]);
    expect(parseServerList(['a:7770', '[::1]:7771', { host: 'c', port: 7772 }])).toEqual([
      { host: 'a', port: 7770 },
      { host: '::1', port: 7771 },
      { host: 'c', port: 7772 },
    ]);
    expect(parseServerList(splitServerFlag('a:7770, b:7770'))).toEqual([
      { host: 'a', port: 7770 },
      { host: 'b', port: 7770 },
    ]);
  });

  it('refuses bad lists with the element named', () => {
    const cases: [unknown, string, string][] = [
      [[], 'ERR_INVALID_ARG_VALUE', '"options.server"'],
      [['a:1', 'nope'], 'ERR_INVALID_ARG_VALUE', '"options.server[1]"'],
      [['a:1', 7], 'ERR_INVALID_ARG_TYPE', '"options.server[1]"'],
      [['a:1', { host: '', port: 1 }], 'ERR_INVALID_ARG_TYPE', '"options.server[1].host"'],
      [['a:1', 'A:1'], 'ERR_INVALID_ARG_VALUE', '"options.server[1]"'],
      [Array.from({ length: 33 }, (_, i) => `h:${i + 1}`), 'ERR_INVALID_ARG_VALUE', 'at most 32'],
      ['a:1,b:2', 'ERR_INVALID_ARG_VALUE', '"options.server"'],
    ];
    for (const [input, code, text] of cases) {
      let err: unknown;
      try {
        parseServerList(input);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(input)).toMatchObject({ code, message: expect.stringContaining(text) });
    }
    expect(() => splitServerFlag(undefined)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });

  it('fails over along the list, says when a whole round failed, and stays on a server that works', () => {
    const list = new ServerList(parseServerList(['a:1', 'b:1', 'c:1']));
    expect(list.current().host).toBe('a');
    expect(list.failed()).toEqual({ next: { host: 'b', port: 1 }, roundFailed: false });
    list.succeeded(); // registered with b
    expect(list.current().host).toBe('b');
    expect(list.failed()).toMatchObject({ next: { host: 'c' }, roundFailed: false }); // b lost
    expect(list.failed()).toMatchObject({ next: { host: 'a' }, roundFailed: false });
    expect(list.failed()).toMatchObject({ next: { host: 'b' }, roundFailed: true }); // all three failed: back off
    expect(list.failed()).toMatchObject({ next: { host: 'c' }, roundFailed: false });
    const one = new ServerList(parseServerList('a:1'));
    expect(one.failed()).toEqual({ next: { host: 'a', port: 1 }, roundFailed: true });
  });
});
