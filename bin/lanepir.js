#!/usr/bin/env node
// Entry point of the `lanepir` command; the CLI itself is compiled TypeScript.
import { main } from '../dist/src/cli/index.js';

await main();
