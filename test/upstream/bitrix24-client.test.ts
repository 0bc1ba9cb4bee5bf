/**
 * The Bitrix24 client on its own: no answer (a closed port, a server that never answers),
 * answers that are not Bitrix24's, the error mapping, and the token kept out of every error.
 * The sandbox tests (sandbox.test.ts) drive it against a real Bitrix24-compatible server.
 */
import assert from "node:assert/strict";
import { type Server as HttpServer, createServer } from "node:http";
import { type AddressInfo, type Server, type Socket, createServer as createTcpServer } from "node:net";
import { after, describe, it } from "node:test";
import { UpstreamError, bitrix24Client, closeBitrix24Pools, encodeQuery, parseQuery, redactWebhookUrl, upstreamErrorOf } from "../../src/upstream/bitrix24/index.ts";
import { outboundPolicy } from "../../src/upstream/outbound.ts";

const TOKEN = "s3cr3tt0k3nabcdef";
/** The fake servers listen on this machine: the operator's allowance (keygate serve --allow-upstream 127.0.0.1). */
const LOCAL = outboundPolicy(["127.0.0.1"]);

after(() => closeBitrix24Pools());

/** Asserts the promise rejects with an UpstreamError of the code; returns the error. */
async function rejection(promise: Promise<unknown>, code: string): Promise<UpstreamError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof UpstreamError, `expected UpstreamError, got ${String(error)}`);
    assert.equal(error.code, code, JSON.stringify({ message: error.message, details: error.details }));
    assert.ok(!JSON.stringify({ m: error.message, d: error.details, p: error.param, s: String(error.stack) }).includes(TOKEN), "the token leaked into the error");
    return error;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

async function listen(server: Server | HttpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

/** An HTTP server answering every request with status, content type and body. */
async function answering(status: number, contentType: string, body: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((_req, res) => {
    res.writeHead(status, { "content-type": contentType });
    res.end(body);
  });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}/rest/1/${TOKEN}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("bitrix24 client: no answer", () => {
  it("a port nobody listens on: BITRIX_UNAVAILABLE; why (ECONNREFUSED) is for the log only", async () => {
    const server = createTcpServer();
    const port = await listen(server);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const b24 = bitrix24Client(`http://127.0.0.1:${port}/rest/1/${TOKEN}/`, { timeoutMs: 2000, outbound: LOCAL });
    const error = await rejection(b24.call("crm.item.list", { entityTypeId: 2 }), "BITRIX_UNAVAILABLE");
    assert.equal(error.status, 502);
    assert.deepEqual(error.details, { method: "crm.item.list", reason: "no_answer" });
    assert.deepEqual(error.noAnswer, { url: `http://127.0.0.1:${port}/rest/1/***/`, reason: "unreachable", code: "ECONNREFUSED" });
  });

  it("a server that never answers: BITRIX_UNAVAILABLE after timeoutMs", async () => {
    const sockets = new Set<Socket>();
    const server = createTcpServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
    });
    const port = await listen(server);
    try {
      const b24 = bitrix24Client(`http://127.0.0.1:${port}/rest/1/${TOKEN}`, { timeoutMs: 300, outbound: LOCAL });
      const started = Date.now();
      const error = await rejection(b24.call("user.get"), "BITRIX_UNAVAILABLE");
      const elapsed = Date.now() - started;
      assert.deepEqual(error.details, { method: "user.get", reason: "no_answer" });
      assert.equal(error.noAnswer?.reason, "timeout");
      assert.ok(elapsed >= 250 && elapsed < 3000, `gave up after ${elapsed} ms`);
      await rejection(b24.batch({ a: "user.get" }), "BITRIX_UNAVAILABLE");
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("bitrix24 client: answers", () => {
  it("an HTML 502 from a proxy, a 200 that is not JSON: BITRIX_UNAVAILABLE, like no answer; the status is for the log only", async () => {
    const bad = await answering(502, "text/html", "<html>Bad Gateway</html>");
    const odd = await answering(200, "text/html", "<html>maintenance</html>");
    try {
      const e1 = await rejection(bitrix24Client(bad.url, { timeoutMs: 2000, outbound: LOCAL }).call("user.get"), "BITRIX_UNAVAILABLE");
      assert.deepEqual(e1.details, { method: "user.get", reason: "no_answer" });
      assert.equal(e1.noAnswer?.httpStatus, 502);
      const e2 = await rejection(bitrix24Client(odd.url, { timeoutMs: 2000, outbound: LOCAL }).call("user.get"), "BITRIX_UNAVAILABLE");
      assert.deepEqual(e2.details, { method: "user.get", reason: "no_answer" });
      assert.deepEqual(e2.noAnswer, { url: odd.url.replace(TOKEN, "***"), reason: "not_rest", httpStatus: 200 });
    } finally {
      await bad.close();
      await odd.close();
    }
  });

  it("an error sent with status 200 is still an error", async () => {
    const server = await answering(200, "application/json", JSON.stringify({ error: "ERROR_ARGUMENT", error_description: "Argument 'PLACEMENT' is null or empty", argument: "PLACEMENT" }));
    try {
      const error = await rejection(bitrix24Client(server.url, { timeoutMs: 2000, outbound: LOCAL }).call("placement.bind", {}), "VALIDATION_ERROR");
      assert.equal(error.param, "PLACEMENT");
      assert.deepEqual(error.details, { method: "placement.bind", error: "ERROR_ARGUMENT", error_description: "Argument 'PLACEMENT' is null or empty", httpStatus: 200 });
    } finally {
      await server.close();
    }
  });

  it("a URL that is not http(s), or a method name that is not one, is refused up front", async () => {
    assert.throws(() => bitrix24Client("ftp://x/rest/1/abc/", { timeoutMs: 1000, outbound: LOCAL }), /http/);
    assert.throws(() => bitrix24Client("not a url", { timeoutMs: 1000, outbound: LOCAL }), /not a URL/);
    const b24 = bitrix24Client(`http://127.0.0.1:9/rest/1/${TOKEN}/`, { timeoutMs: 1000, outbound: LOCAL });
    await assert.rejects(b24.call("../../admin"), /not a Bitrix24 method name/);
    assert.equal(b24.redactedUrl, "http://127.0.0.1:9/rest/1/***/");
  });

  it("redactWebhookUrl hides the token, also of a sandbox webhook", () => {
    assert.equal(redactWebhookUrl(`https://acme.bitrix24.ru/rest/17/${TOKEN}/`), "https://acme.bitrix24.ru/rest/17/***/");
    assert.equal(redactWebhookUrl(`http://127.0.0.1:8080/sandbox/prt_1/rest/1/${TOKEN}/`), "http://127.0.0.1:8080/sandbox/prt_1/rest/1/***/");
    assert.equal(redactWebhookUrl("::"), "(invalid webhook URL)");
  });
});

describe("bitrix24 errors: what each answer means", () => {
  const cases: [string, number | undefined, Record<string, string>, string, string?][] = [
    ["crm.item.list", 503, { error: "QUERY_LIMIT_EXCEEDED", error_description: "Too many requests" }, "BITRIX_UNAVAILABLE"],
    ["crm.item.list", 500, { error: "INTERNAL_SERVER_ERROR", error_description: "Internal server error" }, "BITRIX_UNAVAILABLE"],
    ["crm.item.list", 429, { error: "OPERATION_TIME_LIMIT", error_description: "Method is blocked due to operation time limit" }, "BITRIX_UNAVAILABLE"],
    ["tasks.task.list", 401, { error: "insufficient_scope", error_description: "The request requires higher privileges than provided by the webhook token" }, "BITRIX_ACCESS_DENIED"],
    ["user.get", 401, { error: "INVALID_CREDENTIALS", error_description: "Invalid request credentials" }, "BITRIX_ACCESS_DENIED"],
    ["crm.item.add", 400, { error: "ACCESS_DENIED", error_description: "Access denied" }, "BITRIX_ACCESS_DENIED"],
    ["user.update", 400, { error: "ERROR_CORE", error_description: "access_denied" }, "BITRIX_ACCESS_DENIED"],
    ["tasks.task.update", 400, { error: "0", error_description: "Action on the task is not allowed (internal error)" }, "BITRIX_ACCESS_DENIED"],
    ["tasks.task.delete", 400, { error: "1048582", error_description: "No access to delete the task" }, "BITRIX_ACCESS_DENIED"],
    ["crm.item.get", 400, { error: "NOT_FOUND", error_description: "Element not found" }, "ENTITY_NOT_FOUND"],
    ["crm.item.add", 400, { error: "CRM_FIELD_ERROR_VALUE_NOT_VALID", error_description: 'Invalid value for field "Amount"' }, "VALIDATION_ERROR", "Amount"],
    ["crm.item.add", 400, { error: "CRM_FIELD_ERROR_REQUIRED", error_description: 'The field "Title" is required.' }, "VALIDATION_ERROR", "Title"],
    ["crm.item.list", 400, { error: "INVALID_ARG_VALUE", error_description: "Invalid filter: field 'nope' is not allowed in filter" }, "VALIDATION_ERROR", "nope"],
    ["tasks.task.add", 400, { error: "100", error_description: "Could not find value for parameter {fields} (internal error)" }, "VALIDATION_ERROR", "fields"],
    ["tasks.task.add", 400, { error: "ERROR_CORE", error_description: "Task title not specified<br>" }, "VALIDATION_ERROR"],
    ["im.notify.system.add", 400, { error: "USER_ID_EMPTY", error_description: "User ID can't be empty" }, "VALIDATION_ERROR", "USER_ID"],
    ["user.add", 400, { error: "ERROR_ARGUMENT", error_description: "wrong_email", argument: "" }, "VALIDATION_ERROR"],
    ["foo.bar", 404, { error: "ERROR_METHOD_NOT_FOUND", error_description: "Method not found!" }, "BITRIX_ERROR"],
    ["placement.bind", 400, { error: "ERROR_HANDLER_ALREADY_EXIST", error_description: "Handler already exists!" }, "BITRIX_ERROR"],
    ["x.y", 403, { error: "SOMETHING_NEW", error_description: "" }, "BITRIX_ACCESS_DENIED"],
    ["x.y", undefined, { error: "SOMETHING_NEW", error_description: "" }, "BITRIX_ERROR"],
  ];
  for (const [method, status, body, code, param] of cases) {
    it(`${body["error"]} (${status ?? "in a batch"}) → ${code}${param ? ` on ${param}` : ""}`, () => {
      const error = upstreamErrorOf(method, { error: body["error"]!, error_description: body["error_description"], argument: body["argument"] }, status);
      assert.equal(error.code, code);
      assert.equal(error.param, param);
      assert.equal(error.details.error, body["error"]);
      assert.equal(error.details.error_description, body["error_description"]);
      assert.equal(error.details.method, method);
      assert.ok(!error.message.includes("<br>"));
    });
  }
});

describe("bitrix24 query encoding (batch commands)", () => {
  it("encodes nested parameters as PHP does and parses them back", () => {
    const params = { entityTypeId: 2, filter: { ">opportunity": 1000, "@stageId": ["NEW", "WON"] }, select: ["id", "title"], flag: true, none: null, text: "a&b=c ü" };
    const query = encodeQuery(params);
    assert.equal(query.includes("none"), false);
    assert.deepEqual(parseQuery(query), { entityTypeId: "2", filter: { ">opportunity": "1000", "@stageId": ["NEW", "WON"] }, select: ["id", "title"], flag: "1", text: "a&b=c ü" });
  });

  it("parses a[]=, repeated keys, + as space, and drops prototype keys", () => {
    assert.deepEqual(parseQuery("a[]=1&a[]=2&b=x&b=y&c=hello+world&__proto__[x]=1&d[constructor]=2"), { a: ["1", "2"], b: "y", c: "hello world" });
  });
});
