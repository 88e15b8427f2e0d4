#!/usr/bin/env node
// @ts-check
/**
 * Runs the tcp-punch benchmarks: `node bench/run.mjs --help` lists the flags; docs/BENCHMARKS.md explains each
 * figure. Needs the built package (npm run build:ts, and the addon).
 */
import { main } from './lib/cli.mjs';

await main(process.argv.slice(2));
