import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Type as T } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import { rateLimitHeaders } from "../../limits/policy.ts";
import { BODY_CODES } from "../../gateway/envelope.ts";
import type { App, GatewayContext } from "../../gateway/server.ts";
import type { Sections } from "../sections.ts";
import { AiProvider, type AiOptions, ProviderError } from "./provider.ts";
import { type AiUsage, UsageReader } from "./usage.ts";

/** The largest chat request keygate takes (images inlined as data: URLs make them big). */
export const AI_BODY_LIMIT = 16 * 1024 * 1024;

/**
 * Headers of the provider's answer the client gets; the rest (its cookies, its servers' names) stay
 * behind. The body passes unchanged, so its length and encoding stay true.
 */
const PASSED = ["content-type", "content-length", "content-encoding", "retry-after", "deprecation", "x-model-replacement"];

const ChatRequest = T.Object(
  {
    model: T.Optional(T.String({ minLength: 1, description: 'The model; left out (or "auto"): the operator\'s default model' })),
    messages: T.Array(T.Object({ role: T.String({ minLength: 1 }) }, { additionalProperties: true }), { minItems: 1 }),
    stream: T.Optional(T.Boolean({ description: "Answer as server-sent events (text/event-stream), passed on as the provider sends them" })),
  },
  { additionalProperties: true, description: "OpenAI's chat completion request; every other field (temperature, tools, response_format, stream_options…) is passed on as sent" },
);
/** The provider's answer as it sent it: OpenAI's format, not keygate's envelope. */
const Raw = (description: string, fields: Record<string, ReturnType<typeof T.String>>) =>
  T.Unsafe<unknown>(T.Object(fields, { additionalProperties: true, description }));

/**
 * `vibe:ai` (docs/sections.md): POST /v1/chat/completions and GET /v1/models forwarded to the
 * operator's OpenAI-compatible provider and answered in OpenAI's own format (public facts: the AI
 * router is not enveloped). Streams pass byte for byte; the tokens an answer reports are counted
 * for the key. keygate's own refusals (credentials, scopes, limits, bad input) keep its envelope.
 */
export function aiRoutes(app: App, ctx: GatewayContext, sections: Sections, options: AiOptions | undefined, usage: AiUsage): void {
  const provider = options && new AiProvider(options);
  if (provider) app.addHook("onClose", () => provider.close());
  const connected = sections.guard("ai");
  const codes = ["SECTION_NOT_CONFIGURED", "UPSTREAM_UNAVAILABLE", "UPSTREAM_TIMEOUT"];

  /** Sends the provider's answer on as it arrives (status, body, the headers in PASSED), reading its usage on the way. */
  const relay = async (request: FastifyRequest, reply: FastifyReply, method: "GET" | "POST", path: string, body?: string) => {
    let answer;
    try {
      answer = await provider!.send(method, path, body);
    } catch (e) {
      if (!(e instanceof ProviderError)) throw e;
      return ctx.send(reply, e.code, { message: e.message, hint: "Retry with an increasing pause; if it persists, the operator's AI provider is down." });
    }
    if (answer.status === 401 || answer.status === 403) {
      // The provider refused keygate's credential, not the client's key: the client could not mend it.
      answer.body.resume();
      return ctx.send(reply, "UPSTREAM_UNAVAILABLE", { message: `The AI provider refused keygate's credential (HTTP ${answer.status}).`, hint: "The operator sets the provider's key with --ai-api-key (KEYGATE_AI_API_KEY)." });
    }
    const headers: Record<string, string> = { "cache-control": "no-store", "x-request-id": request.id, ...(request.rateLimit ? rateLimitHeaders(request.rateLimit) : {}) };
    for (const name of PASSED) {
      const value = answer.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    const reader = new UsageReader(headers["content-type"]);
    // Not Fastify's reply from here: no serialiser, no compression, the bytes as the provider sent them.
    reply.hijack();
    reply.raw.writeHead(answer.status, headers);
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        reader.push(chunk);
        callback(null, chunk);
      },
    });
    try {
      await pipeline(answer.body, tap, reply.raw);
    } catch (e) {
      // Cut off midway: the connection is closed, there is nothing more to say. The provider
      // failing (undici's codes) is the operator's concern; a client leaving (a stopped stream) is routine.
      const byProvider = String((e as { code?: unknown }).code ?? "").startsWith("UND_ERR");
      request.log[byProvider ? "warn" : "debug"]({ err: e }, byProvider ? "the AI provider stopped mid-answer" : "the client left mid-answer");
    }
    if (method === "POST" && answer.status < 400) usage.add(request.auth.key.record.id, reader.end());
  };

  app.post(
    "/v1/chat/completions",
    {
      bodyLimit: AI_BODY_LIMIT,
      onRequest: connected,
      schema: {
        operationId: "createChatCompletion",
        tags: ["platform"],
        summary: "Chat completion from the operator's AI provider (OpenAI-compatible; stream: true answers server-sent events); answered in OpenAI's format",
        body: ChatRequest,
        response: {
          ...ctx.responses({ data: T.Unknown(), codes: [...codes, ...BODY_CODES] }),
          200: Raw("OpenAI's chat.completion (or, with stream: true, text/event-stream of chat.completion.chunk events)", { id: T.String(), object: T.String() }),
        },
      },
    },
    async (request, reply) => {
      const chat = request.body as Record<string, unknown>;
      const model = chat.model === undefined || chat.model === "auto" ? (options!.defaultModel ?? chat.model) : chat.model;
      if (model === undefined) throw new KeygateError("VALIDATION_ERROR", { message: "model is required: this keygate has no default model", param: "model" });
      await relay(request, reply, "POST", "/chat/completions", JSON.stringify({ ...chat, model }));
      return reply;
    },
  );

  app.get(
    "/v1/models",
    {
      onRequest: connected,
      schema: {
        operationId: "listModels",
        tags: ["platform"],
        summary: "The models of the operator's AI provider (OpenAI's list format)",
        response: {
          ...ctx.responses({ data: T.Unknown(), codes }),
          200: Raw("OpenAI's model list: {object: \"list\", data: [{id, object: \"model\", …}]}", { object: T.String() }),
        },
      },
    },
    async (request, reply) => {
      await relay(request, reply, "GET", "/models");
      return reply;
    },
  );
}
