#!/usr/bin/env node
// @ts-check
/**
 * Draws the throughput comparison of a results JSON as an SVG, hand-written (no dependency): for every scenario
 * (group × streams × direction) one row per path, with Gbit/s on the left and CPU seconds per GB on the right,
 * each bar the median and each whisker the min–max of the runs.
 *
 *   node bench/chart.mjs [results.json] [-o out.svg]   (default: bench/results/latest.json → latest.svg)
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { RESULTS_DIR, isMain } from './lib/common.mjs';

const W = 1000;
const LABEL_W = 270;
const A_X = 280;
const A_W = 330;
const B_X = 660;
const B_W = 300;
const ROW_H = 20;
const BAR_H = 13;
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

/** @param {unknown} s */
const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

/** @param {number} x */
const r1 = (x) => Math.round(x * 10) / 10;

/**
 * A "nice" axis maximum at or above v.
 * @param {number} v
 */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** @param {string} p */
function colour(p) {
  if (p === 'node-plain' || p === 'direct') return '#8c8c8c';
  if (p === 'node-punched' || p === 'native' || p === 'native-copy' || p === 'js') return '#d9480f';
  return '#1c7ed6';
}

/**
 * @param {any} result a results JSON (one run, or the merged latest.json)
 * @returns {string} SVG text
 */
export function renderChart(result) {
  const section = result?.sections?.throughput;
  const m = result?.machine ?? {};
  const title = 'tcp-punch throughput on loopback: Gbit/s and CPU seconds per GB';
  const sub = `${m.cpuModel ?? '?'} × ${m.cores ?? '?'} cores, Linux ${m.kernel ?? '?'}, Node ${m.node ?? '?'}; ${
    section?.measuredAt ?? m.date ?? ''
  } commit ${(section?.commit ?? m.git?.commit ?? '').slice(0, 8)}${
    section?.loadavg ? `; load average before ${section.loadavg.before[0]}` : ''
  }`;
  /** @type {string[]} */
  const body = [];
  let y = 64;
  if (!section?.scenarios?.length) {
    body.push(`<text x="20" y="${y}" font-size="13">No throughput figures in this results file.</text>`);
    y += 30;
  } else {
    const opts = section.options ?? {};
    body.push(
      `<text x="20" y="${y}" font-size="12" fill="#555">bars: median of ${esc(opts.runs)} runs × ${esc(opts.seconds)} s; whiskers: min–max. Grey: reference; orange: tcp-punch; blue: alternatives.</text>`,
    );
    y += 16;
    for (const group of ['node', 'relay']) {
      const sc = section.scenarios.filter((/** @type {any} */ s) => s.group === group);
      if (sc.length === 0) continue;
      const rows = sc.flatMap((/** @type {any} */ s) => s.rows);
      const gMax = niceMax(Math.max(...rows.map((/** @type {any} */ r) => r.gbps?.max ?? 0)));
      const cMax = niceMax(Math.max(...rows.map((/** @type {any} */ r) => r.cpuPerGB?.max ?? 0)));
      y += 22;
      const heading =
        group === 'node'
          ? 'Node sockets at both ends (same sender/receiver code)'
          : 'Relays: iperf3 client → relay process → iperf3 server';
      body.push(`<text x="20" y="${y}" font-size="14" font-weight="600">${esc(heading)}</text>`);
      y += 8;
      // axes
      body.push(axis(A_X, A_W, y, gMax, 'Gbit/s (higher is better)'));
      body.push(axis(B_X, B_W, y, cMax, group === 'node' ? 'both ends CPU s/GB (lower is better)' : 'relay CPU s/GB (lower is better)'));
      y += 30;
      for (const s of sc) {
        body.push(
          `<text x="20" y="${y + 10}" font-size="12" font-weight="600" fill="#333">${esc(`${s.streams} stream${s.streams > 1 ? 's' : ''}, ${s.direction === 'fwd' ? 'dialing side sends' : 'reverse'}`)}</text>`,
        );
        y += ROW_H;
        for (const r of s.rows) {
          body.push(row(r, y, gMax, cMax));
          y += ROW_H;
        }
        y += 6;
      }
    }
  }
  y += 10;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" ${FONT}>`,
    `<rect width="${W}" height="${y}" fill="#fff"/>`,
    `<text x="20" y="26" font-size="17" font-weight="700">${esc(title)}</text>`,
    `<text x="20" y="44" font-size="11" fill="#666">${esc(sub)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/**
 * @param {number} x @param {number} w @param {number} y @param {number} max @param {string} label
 */
function axis(x, w, y, max, label) {
  const out = [`<text x="${x}" y="${y + 4}" font-size="11" fill="#333">${esc(label)}</text>`];
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const tx = r1(x + (w * i) / ticks);
    const v = (max * i) / ticks;
    out.push(`<line x1="${tx}" y1="${y + 10}" x2="${tx}" y2="${y + 14}" stroke="#999"/>`);
    out.push(`<text x="${tx}" y="${y + 24}" font-size="10" fill="#666" text-anchor="middle">${esc(+v.toFixed(2))}</text>`);
  }
  out.push(`<line x1="${x}" y1="${y + 14}" x2="${x + w}" y2="${y + 14}" stroke="#999"/>`);
  return out.join('\n');
}

/**
 * @param {any} r a scenario row @param {number} y @param {number} gMax @param {number} cMax
 */
function row(r, y, gMax, cMax) {
  const out = [`<text x="${LABEL_W}" y="${y + 10}" font-size="11" text-anchor="end">${esc(r.label)}</text>`];
  if (!r.available || !r.gbps) {
    const why = !r.available ? (r.note ?? 'not available') : r.errors ? `failed: ${r.errors[0]}` : 'no data';
    out.push(`<text x="${A_X + 4}" y="${y + 10}" font-size="11" fill="#999" font-style="italic">${esc(why.slice(0, 110))}</text>`);
    return out.join('\n');
  }
  out.push(bar(A_X, A_W, y, r.gbps, gMax, colour(r.path), `${r.gbps.median.toFixed(2)}${r.ratio ? ` (${r.ratio.median.toFixed(2)}×)` : ''}`));
  if (r.cpuPerGB) out.push(bar(B_X, B_W, y, r.cpuPerGB, cMax, colour(r.path), r.cpuPerGB.median.toFixed(2)));
  else out.push(`<text x="${B_X + 4}" y="${y + 10}" font-size="11" fill="#999">—</text>`);
  return out.join('\n');
}

/**
 * @param {number} x @param {number} w @param {number} y @param {{ median: number, min: number, max: number }} s
 * @param {number} max @param {string} fill @param {string} text
 */
function bar(x, w, y, s, max, fill, text) {
  const sx = (/** @type {number} */ v) => r1(x + (w * Math.min(v, max)) / max);
  const end = sx(s.median);
  const out = [
    `<rect x="${x}" y="${y}" width="${r1(end - x)}" height="${BAR_H}" fill="${fill}" opacity="0.85"/>`,
    `<line x1="${sx(s.min)}" y1="${y + BAR_H / 2}" x2="${sx(s.max)}" y2="${y + BAR_H / 2}" stroke="#222" stroke-width="1"/>`,
    `<line x1="${sx(s.min)}" y1="${y + 3}" x2="${sx(s.min)}" y2="${y + BAR_H - 3}" stroke="#222"/>`,
    `<line x1="${sx(s.max)}" y1="${y + 3}" x2="${sx(s.max)}" y2="${y + BAR_H - 3}" stroke="#222"/>`,
    `<text x="${r1(Math.max(sx(s.max), end) + 4)}" y="${y + 10}" font-size="10" fill="#222">${esc(text)}</text>`,
  ];
  return out.join('\n');
}

if (isMain(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { out: { type: 'string', short: 'o' } },
  });
  const input = positionals[0] ?? path.join(RESULTS_DIR, 'latest.json');
  const output = values.out ?? (positionals[0] ? input.replace(/\.json$/, '') + '.svg' : path.join(RESULTS_DIR, 'latest.svg'));
  const svg = renderChart(JSON.parse(fs.readFileSync(input, 'utf8')));
  fs.writeFileSync(output, svg);
  process.stdout.write(`${output}\n`);
}
