/**
 * Issue 17 §1, seed 001 ("AWAITING_USER — the user receives an email"): the author of a feedback
 * ticket is emailed when the team asks them something or resolves it, where SMTP is configured
 * (`serve --smtp-url --smtp-from`). A real SMTP server (smtp-server) started here receives the
 * mail; keygate sends through its outbox, so SMTP being down delays an email, never a request.
 */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { SMTPServer } from "smtp-server";
import { createUser, issueManagementKey } from "../../src/manage/users.ts";
import { type Harness, startHarness, storeKinds } from "../support/gateway.ts";
import { ok } from "./_fixtures.ts";

interface Mail {
  from: string;
  to: string[];
  /** Headers unfolded, body decoded from quoted-printable. */
  text: string;
}

/** An SMTP server on 127.0.0.1 (a given port, or a free one) that keeps what it receives. */
async function smtpServer(port = 0): Promise<{ port: number; received: Mail[]; close(): Promise<void> }> {
  const received: Mail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const split = raw.indexOf("\r\n\r\n");
        const hex = (s: string) => Buffer.from(s.replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("utf8");
        // RFC 2047 encoded words (=?UTF-8?Q?…?=) in the unfolded headers; quoted-printable in the body.
        const head = raw
          .slice(0, split)
          .replace(/\r\n(?=[ \t])/g, "")
          .replace(/\?=\s+=\?/g, "?==?")
          .replace(/=\?UTF-8\?Q\?(.*?)\?=/gi, (_, word: string) => hex(word.replace(/_/g, " ")));
        const text = `${head}\r\n\r\n${hex(raw.slice(split + 4).replace(/=\r?\n/g, ""))}`;
        const from = session.envelope.mailFrom === false ? "" : session.envelope.mailFrom.address;
        received.push({ from, to: session.envelope.rcptTo.map((r) => r.address), text });
        done();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  return { port: (server.server.address() as AddressInfo).port, received, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/** A port nothing listens on (taken, then freed). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const FROM = "keygate@example.com";

for (const kind of await storeKinds("http: feedback email")) {
  describe(`feedback email [${kind}]`, () => {
    let seq = 0;
    const uniq = (label: string) => `${label}-${++seq}`;

    /** A ticket sent by a member's portal key, and a staff management key to answer it. */
    async function ticket(h: Harness) {
      const author = await createUser(h.kg, null, { email: `${uniq("author")}@example.com`, name: "Ada" });
      const authorMgmt = (await issueManagementKey(h.kg, author, h.kg.profile.management.scopes)).rawKey;
      const portalId = ok(await h.call("POST", "/v1/portals", { key: authorMgmt, body: { domain: `${uniq("p")}.bitrix24.ru`, upstream: { kind: "sandbox" } } }), 201).id;
      const key = ok(await h.call("POST", "/v1/keys", { key: authorMgmt, body: { portalId, name: "k", scopes: ["vibe:feedback"] } }), 201).rawKey;
      const staffUser = await createUser(h.kg, null, { email: `${uniq("staff")}@example.com`, role: "staff" });
      const staff = (await issueManagementKey(h.kg, staffUser, "vibe:mgmt:feedback")).rawKey;
      const t = ok(await h.call("POST", "/v1/feedback", { key, body: { category: "BUG", title: "Deals 500", message: "It breaks." } }), 201);
      return { author, key, staff, t };
    }
    const outbox = async (h: Harness) => (await h.store.sql.all("SELECT to_address, attempts, sent_at, last_error FROM email_outbox", [])) as { to_address: string; attempts: number; sent_at: number | null; last_error: string | null }[];

    describe("with SMTP", () => {
      let h: Harness;
      let smtp: Awaited<ReturnType<typeof smtpServer>>;
      before(async () => {
        smtp = await smtpServer();
        h = await startHarness(kind, { mail: { url: `smtp://127.0.0.1:${smtp.port}`, from: FROM, pollMs: 100 } });
      });
      after(async () => {
        await h.close();
        await smtp.close();
      });

      it("seed 001: AWAITING_USER — the author receives an email with the team's question; RESOLVED — with the resolution", async () => {
        const { author, key, staff, t } = await ticket(h);
        ok(await h.call("POST", `/v1/feedback/${t.id}/comments`, { key: staff, body: { message: "Which request id?", status: "AWAITING_USER" } }), 201);
        await until("the question's email", () => smtp.received.some((m) => m.to.includes(author.email)));
        const asked = smtp.received.find((m) => m.to.includes(author.email))!;
        assert.equal(asked.from, FROM);
        assert.match(asked.text, /^Subject: A question about your feedback "Deals 500"/m);
        assert.match(asked.text, /Which request id\?/);
        assert.match(asked.text, new RegExp(t.id));

        // The author's reply tells nobody by email; resolving does.
        ok(await h.call("POST", `/v1/feedback/${t.id}/comments`, { key, body: { message: "req_123" } }), 201);
        ok(await h.call("PATCH", `/v1/feedback/${t.id}`, { key: staff, body: { status: "RESOLVED", resolution: "Fixed in 1.3" } }));
        await until("the resolution's email", () => smtp.received.filter((m) => m.to.includes(author.email)).length === 2);
        const resolved = smtp.received.filter((m) => m.to.includes(author.email))[1]!;
        assert.match(resolved.text, /^Subject: Your feedback "Deals 500" is resolved/m);
        assert.match(resolved.text, /Fixed in 1\.3/);
        await until("the outbox marks both sent", async () => (await outbox(h)).filter((e) => e.to_address === author.email && e.sent_at !== null).length === 2);
      });

      it("changes the author is not told of (REVIEWING, a comment without a status) send no email", async () => {
        const { author, staff, t } = await ticket(h);
        ok(await h.call("PATCH", `/v1/feedback/${t.id}`, { key: staff, body: { status: "REVIEWING" } }));
        ok(await h.call("POST", `/v1/feedback/${t.id}/comments`, { key: staff, body: { message: "Looking" } }), 201);
        assert.deepEqual((await outbox(h)).filter((e) => e.to_address === author.email), []);
      });
    });

    it("without SMTP the author is told in the app only: nothing goes to the outbox", async () => {
      const h = await startHarness(kind);
      try {
        const { key, staff, t } = await ticket(h);
        ok(await h.call("PATCH", `/v1/feedback/${t.id}`, { key: staff, body: { status: "AWAITING_USER" } }));
        assert.equal(ok(await h.call("GET", "/v1/me/notifications", { key })).length, 1);
        assert.deepEqual(await outbox(h), []);
      } finally {
        await h.close();
      }
    });

    it("SMTP down: the change answers at once, the email waits in the outbox with the error, and is sent on a later try", async () => {
      const port = await closedPort();
      const h = await startHarness(kind, { mail: { url: `smtp://127.0.0.1:${port}`, from: FROM, pollMs: 100 } });
      let smtp: Awaited<ReturnType<typeof smtpServer>> | undefined;
      try {
        const { author, staff, t } = await ticket(h);
        ok(await h.call("PATCH", `/v1/feedback/${t.id}`, { key: staff, body: { status: "AWAITING_USER" } }));
        await until("a failed try", async () => (await outbox(h)).some((e) => e.last_error !== null));
        const [failed] = await outbox(h);
        assert.equal(failed!.sent_at, null);
        assert.equal(failed!.attempts, 1);
        smtp = await smtpServer(port);
        // The retry is due a minute later (harness clock).
        h.clock.advance(61_000);
        await until("the retried email", () => smtp!.received.some((m) => m.to.includes(author.email)));
        await until("the outbox marks it sent", async () => (await outbox(h))[0]!.sent_at !== null);
        assert.equal((await outbox(h))[0]!.attempts, 2);
      } finally {
        await h.close();
        await smtp?.close();
      }
    });
  });
}
