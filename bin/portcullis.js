#!/usr/bin/env node
// The package's command. The TypeScript is compiled by `npm ci` (the `prepare` script).
import { existsSync } from "node:fs";
// Container health checks run `healthcheck` every few seconds: it loads only its own module, not the whole CLI.
const healthcheck = process.argv[2] === "healthcheck";
const entry = new URL(healthcheck ? "../dist/src/cli/healthcheck.js" : "../dist/src/cli/main.js", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write("portcullis is not built yet: run `npm run build` (npm ci does it for you)\n");
  process.exit(1);
}
if (healthcheck) {
  const { healthcheckMain } = await import(entry.href);
  process.exitCode = await healthcheckMain(process.argv.slice(3));
} else {
  const { main } = await import(entry.href);
  process.exitCode = await main(process.argv);
}
