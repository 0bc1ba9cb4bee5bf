import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { BUILTIN_PROFILES, ERRORS, keyFormat, loadProfile } from "../src/index.ts";

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), "utf8");

describe("docs match the code", () => {
  it("docs/api.md lists every error code with its HTTP status", () => {
    const api = read("docs/api.md");
    const codes = { ...ERRORS, ...Object.fromEntries(Object.keys(BUILTIN_PROFILES).flatMap((id) => Object.entries(loadProfile(id).spec.errorCodes ?? {}))) };
    for (const [code, def] of Object.entries(codes)) {
      assert.match(api, new RegExp(`\\| \`${code}\` \\| ${def.status} \\|`), `${code} (${def.status}) is missing from docs/api.md`);
    }
  });

  it("docs/keys.md states the scanner pattern the VibeCode profile uses", () => {
    assert.ok(read("docs/keys.md").includes(keyFormat(loadProfile("vibecode").spec.keyTypes).scannerPattern));
  });
});
