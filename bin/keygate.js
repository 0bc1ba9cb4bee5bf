#!/usr/bin/env node
// keygate runs TypeScript directly on Node 24's type stripping: refuse older Nodes clearly.
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  console.error(`keygate needs Node.js 24 or later; this is ${process.version}. Run it through npm (npm start, npx keygate), which uses the Node the repo installs.`);
  process.exit(2);
}
await import("../src/cli/main.ts");
