/**
 * Slow and greedy clients (issue 10, item 5): a client that sends its headers and then trickles
 * its body is cut off when the request timeout runs out, connections over the cap are closed as
 * they arrive, an idle keep-alive connection is closed, and clients are served
 * meanwhile. The limits are set small here; their production values are in docs/operations.md.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { type Socket, connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { CLIENT_LIMITS } from "../../src/gateway/server.ts";
import { type Harness, startHarness } from "../support/gateway.ts";

/** A raw connection to the harness's server. */
async function open(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await once(socket, "connect");
  return socket;
}

/** Everything the server sends until it closes the connection. */
async function untilClosed(socket: Socket): Promise<string> {
  let received = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => (received += chunk));
  if (!socket.closed) await once(socket, "close");
  return received;
}

describe("slow clients", { timeout: 20_000 }, () => {
  let h: Harness;
  before(async () => {
    h = await startHarness("sqlite", {
      listen: true,
      clientLimits: { requestTimeoutMs: 600, headersTimeoutMs: 600, idleTimeoutMs: 2_000, keepAliveTimeoutMs: 1_000, checkIntervalMs: 100, maxConnections: 20 },
    });
  });
  after(() => h.close());

  it("issue 10.5: the production limits follow nginx — 60 s for the headers and for the whole request, 60 s idle, a connection cap, bounded keep-alive", () => {
    assert.equal(CLIENT_LIMITS.requestTimeoutMs, 60_000);
    assert.equal(CLIENT_LIMITS.headersTimeoutMs, 60_000);
    assert.equal(CLIENT_LIMITS.idleTimeoutMs, 60_000);
    assert.ok(CLIENT_LIMITS.maxConnections > 0 && Number.isFinite(CLIENT_LIMITS.maxConnections));
    assert.ok(CLIENT_LIMITS.keepAliveTimeoutMs > 0);
  });

  it("issue 10.5: a client that sends complete headers, then one body byte at a time, is answered 408 and disconnected when the request timeout runs out; others are served meanwhile", async () => {
    const slow = await open(h.url!);
    slow.write(`POST /v1/keys HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${h.owner.key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
    const trickle = setInterval(() => slow.writable && slow.write(" "), 100);
    try {
      const closed = untilClosed(slow);
      const res = await fetch(`${h.url}/v1/me`, { headers: { "X-Api-Key": h.owner.key } });
      assert.equal(res.status, 200, "a normal client is served while the slow one trickles");
      assert.match(await closed, /^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(trickle);
      slow.destroy();
    }
  });

  it("issue 10.5: a client that never finishes its headers is disconnected", async () => {
    const slow = await open(h.url!);
    slow.write("GET /v1/me HTTP/1.1\r\nHost: x\r\n");
    const trickle = setInterval(() => slow.writable && slow.write("X-A: b\r\n"), 100);
    try {
      assert.match(await untilClosed(slow), /^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(trickle);
      slow.destroy();
    }
  });

  it("issue 10.5: connections over the cap are closed as they arrive; below it, clients connect again", async () => {
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 20; i++) held.push(await open(h.url!));
      const over = await open(h.url!);
      over.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.equal(await untilClosed(over), "", "the connection over the cap is closed unanswered");
    } finally {
      for (const s of held) s.destroy();
    }
    // The held connections are gone: a new one is served.
    for (let i = 0; ; i++) {
      const res = await fetch(`${h.url}/healthz`).catch(() => undefined);
      if (res?.status === 200) break;
      assert.ok(i < 50, "served again once the held connections closed");
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  it("issue 10.5: an idle keep-alive connection is closed after the keep-alive timeout", async () => {
    const socket = await open(h.url!);
    const received = untilClosed(socket);
    socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const text = await received;
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /keep-alive: timeout=1/i, "the client is told how long an idle connection is kept");
  });
});
