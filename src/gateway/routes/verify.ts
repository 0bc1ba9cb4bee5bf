import { routeFacts } from "../usage.ts";
import { Type as T } from "@sinclair/typebox";
import type { Route, RouteAccess } from "../../core/profile/profile.ts";
import type { LimitState } from "../../limits/limiter.ts";
import { normalizeIp } from "../../limits/ip.ts";
import { tightest } from "../../limits/policy.ts";
import { targetProblem } from "../../upstream/http/path.ts";
import type { Admission } from "../admission.ts";
import { BODY_CODES } from "../envelope.ts";
import type { App, GatewayContext } from "../server.ts";

/**
 * Verify mode (docs/upstreams.md, "Verify mode"): `POST /v1/verify` lets a user's own backend
 * ask keygate about a key its client sent, instead of sending the request through keygate. The
 * answer is the decision a real request would get — it is made by the same admission as the
 * gateway's (src/gateway/admission.ts: the authenticator, the key cache, decide, the rate limits,
 * spent on the verified key), told only what differs: the route when `required` is given, which
 * keys the caller may ask about, and where an unrecognised key is counted — and nothing is
 * forwarded.
 *
 * Who may ask: a key allowed on the profile's `POST /v1/verify` route (VibeCode: an API key
 * holding `vibe:verify`; Atender and RogerIQ, which have no such scope: any key of the profile),
 * and only about keys of its own portal: a key of another portal is reported as invalid.
 */

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

const Body = T.Object(
  {
    key: T.String({ maxLength: 256, description: 'The key to verify, as its client sent it ("" when it sent none)' }),
    method: T.String({ pattern: "^[A-Za-z]{1,16}$", description: "The method of the request the key came with" }),
    path: T.Optional(T.String({ minLength: 1, maxLength: 8192, description: "Its path (a query string is ignored): verified against the profile's route table" })),
    required: T.Optional(
      T.Union([T.String({ maxLength: 4096 }), T.Array(T.String({ maxLength: 256 }), { maxItems: 64 })], {
        description: "Instead of path: scopes the request needs (all of them), comma-separated or a list",
      }),
    ),
    ip: T.Optional(T.String({ maxLength: 64, description: "The client's address, for a key with an IP allow-list (without it such a key is refused)" })),
  },
  { additionalProperties: false },
);

const Limit = {
  policy: T.String({ description: "As in the RateLimit-Policy header" }),
  limit: T.Integer(),
  remaining: T.Integer(),
  reset: T.Integer({ description: "Seconds until the window allows more" }),
};
/** The answer: valid with the key's facts, or invalid with the code a real request would get. */
const Verdict = T.Union([
  T.Object({
    valid: T.Literal(true),
    code: T.Null(),
    status: T.Literal(200),
    keyId: T.String(),
    keyType: T.String(),
    name: T.String(),
    portalId: T.Union([T.String(), T.Null()]),
    ownerId: T.String(),
    scopes: T.Array(T.String(), { description: "The scopes in effect" }),
    accessMode: T.String(),
    expiresAt: T.Union([T.String({ format: "date-time" }), T.Null()]),
    tier: T.Union([T.String(), T.Null()]),
    route: T.Union([T.Object({ method: T.String(), path: T.String(), class: T.String() }), T.Null()]),
    required: T.Union([T.Array(T.String()), T.Null()]),
    rateLimit: T.Union([
      T.Object({
        ...Limit,
        limits: T.Array(T.Object({ kind: T.String(), windowSeconds: T.Integer(), ...Limit })),
      }),
      T.Null(),
    ]),
  }),
  T.Object({ valid: T.Literal(false), code: T.String(), status: T.Integer(), message: T.String() }),
]);

/** The limit state of the verified key, as the X-RateLimit-* and RateLimit-Policy headers would give it. */
function limitView(states: readonly LimitState[]) {
  const t = tightest(states);
  if (!t) return null;
  return {
    limit: t.limit.limit,
    remaining: t.remaining,
    reset: Math.max(0, Math.ceil(t.resetMs / 1000)),
    policy: t.limit.policy,
    limits: states.map((s) => ({
      policy: s.limit.policy,
      kind: s.limit.kind,
      limit: s.limit.limit,
      windowSeconds: Math.round(s.limit.windowMs / 1000),
      remaining: s.remaining,
      reset: Math.max(0, Math.ceil(s.resetMs / 1000)),
    })),
  };
}

export function verifyRoutes(app: App, ctx: GatewayContext, admission: Admission): void {
  const { kg, envelope } = ctx;
  const { profile } = kg;

  /** A route standing for an ad-hoc requirement: every key type may call it, class by method. */
  const requirementRoute = (method: string, required: string | string[]): { route: Route } | { problems: { scope: string; code: string; message: string }[] } => {
    const { requirement, problems } = profile.requirement(required);
    if (problems.length > 0) return { problems };
    const access = profile.catalog.keyTypes.map(
      (kt): RouteAccess => ({
        denied: undefined,
        requirement,
        codes: { insufficient: profile.spec.errors.insufficientScope[kt] ?? profile.spec.errors.insufficientScope.default, pending: profile.spec.errors.pendingReissue },
      }),
    );
    const path = "/v1/verify";
    return {
      route: {
        method,
        path,
        description: "An ad-hoc requirement (verify mode)",
        class: WRITE_METHODS.has(method) ? "write" : "read",
        userContext: false,
        sessionError: "TOKEN_MISSING",
        upstreamMethod: undefined,
        upstream: false,
        access,
        spec: { method, path, requires: requirement.text },
      },
    };
  };

  app.post(
    "/v1/verify",
    {
      schema: {
        operationId: "verifyKey",
        tags: ["verify"],
        summary: "Verify mode: the decision keygate would make for a key on a request, without forwarding it (counts toward the verified key's limits)",
        body: Body,
        response: ctx.responses({
          data: Verdict,
          description: "The decision: 200 whether the verified key is valid or not (valid, code)",
          examples: [{ valid: false, code: "SCOPE_DENIED", status: 403, message: "The key lacks a scope this endpoint requires." }],
          codes: [...BODY_CODES, "INVALID_SCOPES"],
        }),
      },
    },
    async (request, reply) => {
      const body = request.body;
      const caller = request.auth.key.record;
      const method = body.method.toUpperCase();
      if ((body.path === undefined) === (body.required === undefined)) {
        return ctx.send(reply, "VALIDATION_ERROR", { message: "give either path or required", param: body.path === undefined ? "path" : "required" });
      }
      if (body.path !== undefined) {
        const problem = targetProblem(body.path);
        if (problem !== undefined) return ctx.send(reply, "VALIDATION_ERROR", { message: `path: ${problem}`, param: "path" });
      }
      let adHoc: Route | undefined;
      if (body.required !== undefined) {
        const built = requirementRoute(method, body.required);
        if ("problems" in built) return ctx.send(reply, "INVALID_SCOPES", { param: "required", details: { problems: built.problems } });
        adHoc = built.route;
      }
      let ip = "";
      if (body.ip !== undefined) {
        const normalized = normalizeIp(body.ip);
        if (normalized === undefined) return ctx.send(reply, "VALIDATION_ERROR", { message: "ip must be an IPv4 or IPv6 address", param: "ip" });
        ip = normalized;
      }

      // Steps 2–12 of docs/verification.md, for the verified key, as the gateway takes them.
      const { verification, spent } = await admission.admit(
        {
          method,
          url: body.path ?? "/v1/verify",
          headers: { "x-api-key": body.key },
          // Without the client's address, an allow-listed key cannot be shown to come from it.
          clientIp: ip,
          route: adHoc,
          // Keys of another portal are none of the caller's business: unknown, like a wrong key.
          accepts: (key) => key.record.portalId !== null && key.record.portalId === caller.portalId,
          // Without a recognised key the limits are the address's: the caller's own, which it
          // cannot choose (`ip` could spread guesses over many addresses' failed-attempt budgets).
          countedAt: request.auth.clientIp,
        },
        // The backend that asked serves the request itself: the portal's budget is spent here, with the rest.
        { wholeBudget: true },
      );
      const { key, route } = verification;
      const code = !spent.admitted ? spent.code! : verification.refusal?.code;

      if (key) {
        ctx.usage.record({
          keyId: key.record.id,
          ip: ip || request.auth.clientIp,
          method,
          target: body.path ?? "/v1/verify",
          status: code === undefined ? 200 : envelope.def(code).status,
          latencyMs: 0,
          // An ad-hoc requirement is no route of the profile: only its refusal is worth advice.
          ...routeFacts(adHoc === undefined ? route : undefined, verification.refusal),
        });
      }
      if (code !== undefined) {
        // Nothing about a key reported invalid beyond the code.
        return envelope.ok({ valid: false, code, status: envelope.def(code).status, message: envelope.def(code).message });
      }
      const record = key!.record;
      return envelope.ok({
        valid: true,
        code: null,
        status: 200,
        keyId: record.id,
        keyType: record.type,
        name: record.name,
        portalId: record.portalId,
        ownerId: record.ownerId,
        scopes: profile.effective({ scopes: record.scopes, issued: record.issuedScopes }),
        accessMode: record.accessMode,
        expiresAt: record.expiresAt === null ? null : new Date(record.expiresAt).toISOString(),
        tier: record.tier,
        route: adHoc ? null : { method: route!.method, path: route!.path, class: route!.class },
        required: adHoc ? adHoc.spec.requires : null,
        rateLimit: limitView(spent.states),
      });
    },
  );
}
