/**
 * The upstream of the proxy benchmark: a small, fast node:http server that answers every
 * request with the same JSON body (a page of three knowledge-base articles, about 1 KB), after
 * reading the request body if there is one. Keep-alive connections are kept a minute, so the
 * proxies in front of it keep theirs between runs.
 *
 *     node bench/servers/upstream.ts
 *
 * Prints "listening http://127.0.0.1:<port> <body bytes>" once ready; SIGTERM closes it.
 */
import { createServer } from "node:http";

const articles = [1, 2, 3].map((n) => ({
  id: `art_${String(n).padStart(6, "0")}`,
  projectId: "p1",
  title: `How to set up the widget, part ${n}`,
  slug: `how-to-set-up-the-widget-part-${n}`,
  status: "published",
  locale: "en",
  tags: ["widget", "setup", "getting-started"],
  summary: "Install the snippet, pick a theme, choose which pages show the widget, and test it on a staging site before going live.",
  updatedAt: "2026-11-20T09:30:00.000Z",
}));
const body = Buffer.from(JSON.stringify({ data: articles, has_more: false, next_cursor: null }));
const headers = { "content-type": "application/json; charset=utf-8", "content-length": String(body.length) };

const server = createServer((req, res) => {
  const answer = () => {
    res.writeHead(200, headers);
    res.end(body);
  };
  if (req.headers["content-length"] === undefined && req.headers["transfer-encoding"] === undefined) {
    req.resume();
    answer();
  } else {
    req.on("end", answer);
    req.resume();
  }
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(`listening http://127.0.0.1:${typeof address === "object" && address ? address.port : 0} ${body.length}`);
});
const close = () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
};
process.once("SIGTERM", close);
process.once("SIGINT", close);
