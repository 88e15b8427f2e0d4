/** fast-check arbitraries derived from the protocol schemas, so every message type is covered automatically. */
import { isIP } from 'node:net';

import fc from 'fast-check';

import { RELAY_TYPES, SCHEMAS } from '../../lib/protocol/messages.js';
import type { Message, RelayName, SchemaName } from '../../lib/protocol/messages.js';
import type { FieldSpec } from '../../lib/protocol/fields.js';

const endpoint = fc.record({
  host: fc.oneof(fc.ipV4(), fc.ipV6()).filter((h) => h.length <= 45 && isIP(h) !== 0),
  port: fc.integer({ min: 1, max: 65535 }),
});

/** An arbitrary valid value for one field spec. */
export function fieldArb(spec: FieldSpec): fc.Arbitrary<unknown> {
  switch (spec.kind) {
    case 'u8':
      return fc.integer({ min: 0, max: 0xff });
    case 'u16':
      return fc.integer({ min: 0, max: 0xffff });
    case 'u32':
      return fc.integer({ min: 0, max: 0xffffffff });
    case 'bool':
      return fc.boolean();
    case 'bytes':
      return fc.uint8Array({ minLength: spec.len, maxLength: spec.len });
    case 'varbytes':
      return fc.constantFrom(...spec.lens).chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));
    case 'string': {
      const base = spec.pattern
        ? fc.stringMatching(spec.pattern)
        : fc.string({ unit: 'binary', maxLength: spec.max });
      return base.filter((s) => Buffer.byteLength(s) <= spec.max && (!spec.pattern || spec.pattern.test(s)));
    }
    case 'enum':
      return fc.constantFrom(...spec.values);
    case 'endpoint':
      return endpoint;
    case 'endpoints':
      return fc.array(endpoint, { maxLength: spec.max });
  }
}

/** An arbitrary valid message of the given schema. */
export function messageArb(name: SchemaName): fc.Arbitrary<Message> {
  const fields = SCHEMAS[name].fields as Record<string, FieldSpec>;
  const rec: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [k, spec] of Object.entries(fields)) rec[k] = fieldArb(spec);
  return fc.record(rec).map((v) => ({ type: name, ...v }) as Message);
}

/** Any valid message, relay messages (opaque bodies) included. */
export const anyMessage: fc.Arbitrary<Message> = fc.oneof(
  ...(Object.keys(SCHEMAS) as SchemaName[]).map(messageArb),
  fc
    .record({
      type: fc.constantFrom(...(Object.keys(RELAY_TYPES) as RelayName[])),
      body: fc.uint8Array({ maxLength: 300 }),
    })
    .map(({ type, body }) => ({ type, typeByte: RELAY_TYPES[type], body }) as Message),
);
