import { type TSchema, Type as T } from "@sinclair/typebox";
import { keyScopeAdvice } from "../../manage/scope-advice.ts";
import type { App, GatewayContext } from "../server.ts";
import { actorOf } from "./actor.ts";

const Time = T.String({ format: "date-time" });
const Nullable = <S extends TSchema>(s: S) => T.Union([s, T.Null()]);
const Clauses = T.Array(T.String(), { description: "One entry per clause of the requirement: every entry must be met; alternatives within one are joined by |" });

const ScopeAdvice = T.Object(
  {
    keyId: T.String(),
    scopes: T.Array(T.String(), { description: "The scopes the key holds now" }),
    observedRoutes: T.Array(
      T.Object({
        method: T.String(),
        route: T.String({ description: "The route pattern of the profile, not the raw path" }),
        count: T.Integer(),
        lastAt: Time,
        requires: T.Union([Clauses, T.Null()], { description: "What the route requires of this key type (empty: no scope); null: the key type may never call it" }),
      }),
    ),
    suggestedScopes: T.Array(
      T.Object({
        scope: T.String(),
        reason: T.Unsafe<"covers" | "auto-granted" | "companion">({ type: "string", enum: ["covers", "auto-granted", "companion"] }),
        covers: T.Array(T.String(), { description: "The observed requirements (clauses) this scope meets" }),
        held: T.Boolean({ description: "The key has it in effect now" }),
      }),
      { description: "The narrowest scopes of the profile that cover every observed request: granular scopes, never coarse ones or bundles" },
    ),
    unusedScopes: T.Array(T.String(), { description: "Held scopes that met none of the observed requirements" }),
    neededNotHeld: T.Array(
      T.Object({ method: T.String(), route: Nullable(T.String()), missing: Clauses, count: T.Integer(), lastAt: Time }),
      { description: "Requests refused because the key lacked a scope" },
    ),
    narrowTo: Nullable(T.Array(T.String(), { description: "PATCH /v1/keys/:id with these scopes to narrow the key: it only removes; null: nothing to narrow" })),
    window: T.Object({
      from: Nullable(Time),
      to: Nullable(Time),
      requests: T.Integer({ description: "Requests in the retained log" }),
      unmatchedRequests: T.Integer({ description: "Of those, requests that matched no route (or were logged before routes were): not counted" }),
      days: T.Number({ description: "Days between the first and the last request" }),
    }),
    confidence: T.Object({
      level: T.Unsafe<"low" | "normal">({ type: "string", enum: ["low", "normal"] }),
      note: Nullable(T.String()),
    }),
  },
  { additionalProperties: false },
);

export function scopeAdviceRoutes(app: App, { kg, envelope, usage, responses }: GatewayContext): void {
  app.get(
    "/v1/keys/:id/scope-advice",
    {
      schema: {
        operationId: "getKeyScopeAdvice",
        tags: ["keys"],
        summary: "The narrowest scopes that cover what the key was used for over the retained request log, its unused scopes, and the requests refused for a scope (its owner, its portal's admins)",
        params: T.Object({ id: T.String() }),
        response: responses({ data: ScopeAdvice, codes: ["KEY_NOT_FOUND", "MANAGEMENT_KEY_REQUIRED"] }),
      },
    },
    async (request) => {
      // What was collected but not written yet belongs in the answer.
      await usage.flush();
      return envelope.ok(await keyScopeAdvice(kg, await actorOf(kg, request), request.params.id));
    },
  );
}
