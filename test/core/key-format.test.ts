import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { generateKey, keyDigest, keyFormat, loadProfile } from "../../src/index.ts";

const types = loadProfile("vibecode").spec.keyTypes;
const format = keyFormat(types);
const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

describe("key format", () => {
  it("a generated key is its type prefix + 38 base62 characters, and parses back to its type", () => {
    for (const t of types) {
      const key = generateKey(t.prefix);
      assert.match(key, new RegExp(`^${t.prefix}[0-9A-Za-z]{38}$`));
      assert.equal(format.parse(key), t.id);
      assert.match(key, new RegExp(format.scannerPattern));
    }
  });

  it("two keys are never the same (190 random bits)", () => {
    const keys = new Set(Array.from({ length: 2000 }, () => generateKey("vibe_api_")));
    assert.equal(keys.size, 2000);
  });

  it("a typo (any one character changed) is rejected by the checksum, before any lookup", () => {
    const key = generateKey("vibe_api_");
    const body = "vibe_api_".length;
    fc.assert(
      fc.property(fc.integer({ min: body, max: key.length - 1 }), fc.constantFrom(...BASE62), (i, c) => {
        fc.pre(key[i] !== c);
        assert.equal(format.parse(key.slice(0, i) + c + key.slice(i + 1)), undefined);
      }),
      { numRuns: 500 },
    );
  });

  it("two neighbouring characters swapped are rejected", () => {
    const key = generateKey("vibe_live_");
    for (let i = "vibe_live_".length; i < key.length - 1; i++) {
      if (key[i] === key[i + 1]) continue;
      assert.equal(format.parse(key.slice(0, i) + key[i + 1] + key[i] + key.slice(i + 2)), undefined, `swap at ${i}`);
    }
  });

  it("random strings, wrong prefixes, wrong lengths and other products' keys are rejected", () => {
    fc.assert(fc.property(fc.string(), (s) => assert.equal(format.parse(s), undefined)));
    const key = generateKey("vibe_api_");
    for (const bad of [key.slice(0, -1), `${key}x`, key.replace("vibe_api_", "vibe_xyz_"), key.replace("vibe_api_", "VIBE_API_"), ` ${key}`, generateKey("riq_")]) {
      assert.equal(format.parse(bad), undefined, bad);
    }
  });

  it("the stored digest depends on the server secret and is not the key", () => {
    const key = generateKey("vibe_api_");
    assert.notEqual(keyDigest("secret-a", key), keyDigest("secret-b", key));
    assert.equal(keyDigest("secret-a", key), keyDigest("secret-a", key));
    assert.ok(!keyDigest("secret-a", key).includes(key.slice(9, 20)));
  });
});
