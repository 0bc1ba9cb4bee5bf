/**
 * issue 11.4: `keygate serve --tls-cert --tls-key` serves HTTPS (the data plane still reaches
 * its own sandbox), `--sandbox-port` serves the sandbox at a host root, and the first-start banner
 * shows the sandbox's incoming webhook with a curl line that works.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Agent, fetch } from "undici";
import { selfSignedCertificate } from "../support/tls.ts";
import { keygate, startServe } from "./run.ts";

const { cert, key } = await selfSignedCertificate();
const dir = mkdtempSync(join(tmpdir(), "keygate-tls-"));
const certFile = join(dir, "cert.pem");
const keyFile = join(dir, "key.pem");
writeFileSync(certFile, cert);
writeFileSync(keyFile, key, { mode: 0o600 });
/** Trusts the test's certificate, for this client only. */
const trusting = new Agent({ connect: { ca: cert } });

describe("issue 11.4: keygate serve over HTTPS, with the sandbox at a host root", () => {
  it("serves HTTPS on both ports; the banner's sandbox webhook and curl line work; admins see the same URL; keys reach the sandbox's data", async () => {
    const { child, url, output } = await startServe("--host", "127.0.0.1", "--tls-cert", certFile, "--tls-key", keyFile, "--sandbox-port", "0");
    try {
      assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
      const sandboxUrl = /the sandbox portal listening on (https:\/\/127\.0\.0\.1:\d+) /.exec(output)?.[1];
      assert.ok(sandboxUrl, output);
      const webhook = /The sandbox's incoming webhook, for Bitrix24 clients \(keep it secret\): (\S+)/.exec(output)?.[1];
      assert.ok(webhook, output);
      assert.match(webhook, new RegExp(`^${sandboxUrl.replace(/\./g, "\\.")}/rest/1/[0-9a-f]{32}/$`), "Bitrix24's form: /rest/<user id>/<token>/ at the root");
      const curl = /Try it: curl -k "(\S+)"/.exec(output)?.[1];
      assert.ok(curl?.startsWith(`${webhook}crm.deal.list?`), output);

      const deals = (await (await fetch(curl!, { dispatcher: trusting })).json()) as { result: { ID: string; TITLE: string }[]; total: number };
      assert.equal(deals.total, 6, "the demo deals");
      assert.deepEqual(Object.keys(deals.result[0]!).sort(), ["ID", "TITLE"]);

      const managementKey = /management key \(shown once, store it now\): (vibe_live_\w+)/.exec(output)![1]!;
      const api = async (method: string, path: string, body?: unknown) => {
        const res = await fetch(`${url}${path}`, {
          method,
          dispatcher: trusting,
          headers: { "x-api-key": managementKey, ...(body === undefined ? {} : { "content-type": "application/json" }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return { status: res.status, body: (await res.json()) as { data: Record<string, unknown> & Record<string, unknown>[] } };
      };
      const portals = await api("GET", "/v1/portals");
      assert.equal(portals.status, 200);
      const sandbox = portals.body.data.find((p) => p["domain"] === "sandbox.keygate.local")!;
      assert.equal(sandbox["sandboxWebhookUrl"], webhook, "the portal view shows the same webhook as the banner");

      // The data plane calls the sandbox on keygate's own (HTTPS) address.
      const created = await api("POST", "/v1/keys", { portalId: sandbox["id"], name: "TLS key", scopes: ["crm"] });
      assert.equal(created.status, 201);
      const res = await fetch(`${url}/v1/deals?limit=2`, { dispatcher: trusting, headers: { "x-api-key": String(created.body.data["rawKey"]) } });
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(((await res.json()) as { data: unknown[] }).data.length, 2);
    } finally {
      child.kill("SIGTERM");
      const [code] = (await once(child, "exit")) as [number | null];
      assert.equal(code, 0);
    }
  });

  it("refuses a certificate without its key, an unreadable or non-PEM file, and a bad --sandbox-port, before starting", () => {
    const alone = keygate("serve", "--data-dir", mkdtempSync(join(tmpdir(), "keygate-tls-")), "--tls-cert", certFile);
    assert.equal(alone.status, 2);
    assert.match(alone.stderr, /--tls-cert and --tls-key go together/);
    const missing = keygate("serve", "--data-dir", mkdtempSync(join(tmpdir(), "keygate-tls-")), "--tls-cert", join(dir, "nope.pem"), "--tls-key", keyFile);
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--tls-cert: cannot read/);
    const notPem = keygate("serve", "--data-dir", mkdtempSync(join(tmpdir(), "keygate-tls-")), "--tls-cert", keyFile, "--tls-key", certFile);
    assert.equal(notPem.status, 2);
    assert.match(notPem.stderr, /not a PEM certificate and its private key/);
    const port = keygate("serve", "--data-dir", mkdtempSync(join(tmpdir(), "keygate-tls-")), "--sandbox-port", "http");
    assert.equal(port.status, 2);
    assert.match(port.stderr, /--sandbox-port must be a whole number/);
  });
});
