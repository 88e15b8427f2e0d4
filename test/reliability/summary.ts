/**
 * Results of the reliability suite: every test file records its numbers under `.results/<file>.json` (one file per
 * test file, so that files running in parallel forks never write the same file; `<file>.soak.json` for the soak),
 * and `scripts/reliability.mjs` merges them into `.results/summary-<kind>.json` and renders docs/RELIABILITY.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = fileURLToPath(new URL('./.results/', import.meta.url));

/** True for the long soak (`TCP_PUNCH_SOAK=1`, set by `node scripts/reliability.mjs --soak`). */
export const SOAK = process.env.TCP_PUNCH_SOAK === '1';

/** The bounded CI value, or the soak value. */
export function scale<T>(ci: T, soak: T): T {
  return SOAK ? soak : ci;
}

/**
 * Merges `data` under `key` into `.results/<file>.json` (`<file>.soak.json` for the soak, so that a bounded run
 * never overwrites what a soak recorded, nor the other way round).
 */
export function record(file: string, key: string, data: unknown): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = `${RESULTS_DIR}${file}${SOAK ? '.soak' : ''}.json`;
  let doc: Record<string, unknown> = {};
  try {
    doc = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch {
    // first record of this run
  }
  doc.soak = SOAK;
  doc.updatedAt = new Date().toISOString();
  const results = (doc.results ?? {}) as Record<string, unknown>;
  results[key] = data;
  doc.results = results;
  writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`);
}
