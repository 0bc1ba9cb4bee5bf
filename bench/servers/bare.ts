/**
 * The baseline of the HTTP benchmark: a bare Fastify server (the same Fastify as keygate's,
 * logger off, no hooks, no plugins) with one GET route per payload, each sending its JSON text
 * as it is, serialised once: keygate keeps each key's /v1/me answer serialised too, so neither
 * side serialises per request and the comparison is of everything else.
 *
 *     node bench/servers/bare.ts <payloads.json>    # {"/me/management": "{…}", …}
 *
 * Prints "listening http://127.0.0.1:<port>" once ready; SIGTERM closes it (and lets
 * --cpu-prof write its profile).
 */
import { readFileSync } from "node:fs";
import Fastify from "fastify";

const file = process.argv[2];
if (!file) {
  console.error("usage: node bench/servers/bare.ts <payloads.json>");
  process.exit(2);
}
const payloads = JSON.parse(readFileSync(file, "utf8")) as Record<string, string>;

const app = Fastify({ logger: false });
for (const [path, text] of Object.entries(payloads)) app.get(path, async (_request, reply) => reply.type("application/json; charset=utf-8").send(text));

await app.listen({ port: 0, host: "127.0.0.1" });
const address = app.server.address();
console.log(`listening http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`);
process.once("SIGTERM", () => void app.close().then(() => process.exit(0)));
process.once("SIGINT", () => void app.close().then(() => process.exit(0)));
