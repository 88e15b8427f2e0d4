#!/usr/bin/env node
// @ts-check
/**
 * Prints a results JSON as Markdown (machine, then each section's tables), or writes it into docs/BENCHMARKS.md
 * between the `<!-- latest:begin -->` and `<!-- latest:end -->` markers.
 *
 *   node bench/report.mjs [results.json] [--update-docs]   (default: bench/results/latest.json)
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { RESULTS_DIR, ROOT, isMain, markdownTable } from './lib/common.mjs';
import { SECTIONS } from './lib/cli.mjs';

const DOC = path.join(ROOT, 'docs', 'BENCHMARKS.md');
const BEGIN = '<!-- latest:begin -->';
const END = '<!-- latest:end -->';

/**
 * @param {any} result @returns {Promise<string>}
 */
export async function markdown(result) {
  const m = result.machine ?? {};
  const out = [
    `Machine of the newest run: ${m.cpuModel} × ${m.cores} cores, ${m.memTotalMiB} MiB, ${m.distro ?? m.os}, Linux ${m.kernel}, Node ${m.node}; ` +
      `iperf3 ${m.tools?.iperf3?.replace(/^iperf /, '') ?? 'missing'}, socat ${m.tools?.socat ?? 'missing'}, ` +
      `${m.tools?.haproxy?.replace(/ - https.*$/, '') ?? 'haproxy missing'}.`,
  ];
  for (const [name, rel] of Object.entries(SECTIONS)) {
    const section = result.sections?.[name];
    if (!section) continue;
    const on = section.machine ? `, on ${section.machine.cpuModel} × ${section.machine.cores}, Linux ${section.machine.kernel}` : '';
    const when = `measured ${section.measuredAt ?? '?'} at commit ${(section.commit ?? '?').slice(0, 8)}${on}` +
      (section.loadavg ? `, load average before ${section.loadavg.before[0]}` : '');
    out.push('', `### ${name} (${when})`, '');
    if (section.error) {
      out.push(`Failed: ${section.error}`);
      continue;
    }
    const mod = await import(rel.replace(/^\.\.\//, './'));
    // Text lines of the report become paragraphs; tables come out as Markdown.
    const text = mod.report(section, markdownTable);
    out.push(
      text
        .split('\n')
        .map((/** @type {string} */ l) => (l.startsWith('|') || l === '' ? l : `\n${l}\n`))
        .join('\n')
        .replace(/\n{3,}/g, '\n\n')
        .trim(),
    );
  }
  return `${out.join('\n')}\n`;
}

if (isMain(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { 'update-docs': { type: 'boolean', default: false } },
  });
  const file = positionals[0] ?? path.join(RESULTS_DIR, 'latest.json');
  const md = await markdown(JSON.parse(fs.readFileSync(file, 'utf8')));
  if (values['update-docs']) {
    const doc = fs.readFileSync(DOC, 'utf8');
    const a = doc.indexOf(BEGIN);
    const b = doc.indexOf(END);
    if (a < 0 || b < a) throw new Error(`${DOC} has no ${BEGIN} … ${END} block`);
    fs.writeFileSync(DOC, `${doc.slice(0, a + BEGIN.length)}\n${md}${doc.slice(b)}`);
    process.stdout.write(`updated ${path.relative(process.cwd(), DOC)}\n`);
  } else process.stdout.write(md);
}
