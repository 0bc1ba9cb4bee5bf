/**
 * Issue 11.1: the typed client's types are the document's. src/client/schema.d.ts is generated
 * from GET /v1/openapi.json (`npm run client:generate`) and committed; when a route's schema
 * changes and the file is not regenerated, this fails (it runs in `npm test`, so in CI).
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { it } from "node:test";
import { SCHEMA_FILE, clientTypes, openApiDocument } from "../../src/client/generate.ts";

it("issue 11.1: the committed client types (src/client/schema.d.ts) are what the running server's document generates — run npm run client:generate after changing a route", async () => {
  const committed = await readFile(SCHEMA_FILE, "utf8");
  const generated = await clientTypes(await openApiDocument());
  if (committed !== generated) {
    const a = committed.split("\n");
    const b = generated.split("\n");
    const at = a.findIndex((line, i) => line !== b[i]);
    assert.fail(`src/client/schema.d.ts is out of date (npm run client:generate); first difference at line ${at + 1}:\n- ${a[at]}\n+ ${b[at]}`);
  }
});
