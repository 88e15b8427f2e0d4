#!/usr/bin/env node
/**
 * The `tcp-punch` command: serve, expose, connect, nat-check.
 */
import { run } from './run.js';

process.exitCode = await run(process.argv.slice(2));
