/**
 * issue 14 §2: logs carry no credential — not the X-Api-Key or Authorization header, cookies,
 * session or webhook tokens, nor any key-shaped string in a message, an error or a field.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import Fastify from "fastify";
import { generateKey } from "../../src/core/keys/format.ts";
import { loggerOptions } from "../../src/gateway/logging.ts";

describe("issue 14: log redaction", () => {
  const capture = (level: "info" | "warn" = "info") => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const app = Fastify({ logger: loggerOptions(level, stream) });
    return { log: app.log, lines };
  };

  it("issue 14: credential headers, cookies, session and webhook tokens are redacted by field, key-shaped strings and webhook tokens by shape", () => {
    const { log, lines } = capture();
    const key = generateKey("vibe_api_");
    const other = generateKey("sa_live_");
    log.info(
      {
        request: { headers: { "x-api-key": key, authorization: `Bearer ${other}`, cookie: "kg_session=abc123", "user-agent": "curl/8" } },
        session: "s3cr3t-session",
        upstream: { webhookUrl: "https://b24.example.com/rest/1/tok3n/" },
        note: `a client sent ${key} in a query`,
      },
      `key ${other} refused; webhook https://b24.example.com/rest/7/abcdef123/crm.deal.list failed`,
    );
    log.error({ err: new Error(`upstream said: ${key} is invalid`) }, "unhandled error");
    const text = lines.join("");
    for (const secret of [key, other, "abc123", "s3cr3t-session", "tok3n", "abcdef123"]) assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
    const first = JSON.parse(lines[0]!);
    assert.equal(first.request.headers["user-agent"], "curl/8", "the rest stays");
    assert.equal(first.request.headers["x-api-key"], "[redacted]");
    assert.match(first.msg, /key sa_live_\[redacted\] refused; webhook https:\/\/b24\.example\.com\/rest\/7\/\[redacted\]\/crm\.deal\.list failed/);
    assert.match(JSON.parse(lines[1]!).err.message, /upstream said: vibe_api_\[redacted\] is invalid/);
  });

  it("issue 14: the level is kept: below it, nothing is written", () => {
    const { log, lines } = capture("warn");
    log.info("not written");
    log.warn("written");
    assert.equal(lines.length, 1);
    assert.equal(JSON.parse(lines[0]!).msg, "written");
  });
});
