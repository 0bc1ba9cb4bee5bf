/**
 * Generates src/client/schema.d.ts, the types of the typed client, from the OpenAPI document of a
 * keygate built here (the VibeCode profile, an in-memory store): `npm run client:generate`. A test
 * (test/client/drift.test.ts) fails when the committed file differs from what this generates.
 * Development only: openapi-typescript is a devDependency, and the client never imports this.
 */
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import openapiTS, { COMMENT_HEADER, type OpenAPI3, astToString } from "openapi-typescript";
import { buildServer } from "../gateway/server.ts";
import { loadProfile } from "../profiles/index.ts";
import { openSqliteStore } from "../store/index.ts";

export const SCHEMA_FILE = fileURLToPath(new URL("schema.d.ts", import.meta.url));

/** The OpenAPI document of the VibeCode profile, as GET /v1/openapi.json serves it. */
export async function openApiDocument(): Promise<OpenAPI3> {
  const serverSecret = "client-generation";
  const store = await openSqliteStore(":memory:", { serverSecret });
  const app = buildServer({ profile: loadProfile("vibecode"), store, serverSecret });
  try {
    await app.ready();
    return app.swagger() as unknown as OpenAPI3;
  } finally {
    await app.close();
    await store.close();
  }
}

/** The text of schema.d.ts for a document. */
export async function clientTypes(doc: OpenAPI3): Promise<string> {
  return COMMENT_HEADER + astToString(await openapiTS(doc));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await writeFile(SCHEMA_FILE, await clientTypes(await openApiDocument()));
  console.log(`wrote ${SCHEMA_FILE}`);
}
