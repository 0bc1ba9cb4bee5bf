import { type Static, Type as T } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { ProfileSpec } from "../core/profile/spec.ts";

/** JSON Schema of the profile format (mirrors src/core/profile/spec.ts; a type test keeps them equal). */
const Id = T.String({ minLength: 1 });
const KeyTypeIds = T.Array(Id);
const ActionGraph = T.Record(T.String(), T.Array(T.String()));
const CodeByKeyType = T.Intersect([T.Object({ default: Id }), T.Record(T.String(), T.String())]);

const Requirement = T.Recursive((Self) =>
  T.Union([T.String({ minLength: 1 }), T.Array(Self), T.Object({ allOf: T.Array(Self) }, { additionalProperties: false }), T.Object({ anyOf: T.Array(Self) }, { additionalProperties: false })]),
);

const Resource = T.Object(
  {
    id: Id,
    description: T.String(),
    actions: T.Optional(T.Union([T.String(), ActionGraph])),
    aliases: T.Optional(T.Array(Id)),
    autoGrant: T.Optional(KeyTypeIds),
    reserved: T.Optional(T.Boolean()),
    keyTypes: T.Optional(KeyTypeIds),
  },
  { additionalProperties: false },
);

const Route = T.Object(
  {
    method: T.String({ pattern: "^[A-Za-z]+$" }),
    path: T.String({ pattern: "^/" }),
    description: T.Optional(T.String()),
    resource: T.Optional(Id),
    requires: T.Optional(T.Union([Requirement, T.Null()])),
    requiresByKeyType: T.Optional(T.Record(T.String(), T.Union([Requirement, T.Null()]))),
    keyTypes: T.Optional(KeyTypeIds),
    keyTypeError: T.Optional(T.Record(T.String(), T.String())),
    class: T.Optional(T.Union([T.Literal("read"), T.Literal("write")])),
    userContext: T.Optional(T.Boolean()),
    sessionError: T.Optional(T.String()),
    upstreamMethod: T.Optional(T.String()),
    upstream: T.Optional(T.Boolean()),
    perMinute: T.Optional(T.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

export const ProfileSchema = T.Object(
  {
    $schema: T.Optional(T.String()),
    id: T.String({ pattern: "^[a-z][a-z0-9_-]*$" }),
    title: T.String(),
    description: T.String(),
    keyTypes: T.Array(
      T.Object(
        {
          id: T.String({ pattern: "^[a-z][a-z0-9_]*$" }),
          prefix: T.String({ pattern: "^[a-z][a-z0-9]*_([a-z0-9]+_)*$" }),
          label: T.String(),
          description: T.Optional(T.String()),
          readOnlyByMethod: T.Optional(T.Boolean()),
          portalless: T.Optional(T.Boolean()),
          sessionUser: T.Optional(T.Boolean()),
          selfType: T.Optional(T.String()),
          reissueGrantsLocked: T.Optional(T.Boolean()),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    actionGraphs: T.Optional(T.Record(T.String(), ActionGraph)),
    groups: T.Array(
      T.Object(
        {
          id: Id,
          label: T.String(),
          description: T.Optional(T.String()),
          lockedAtIssue: T.Optional(T.Boolean()),
          keyTypes: T.Optional(KeyTypeIds),
          coarse: T.Optional(T.Boolean()),
          resources: T.Array(Resource),
        },
        { additionalProperties: false },
      ),
      { minItems: 1 },
    ),
    coarse: T.Optional(T.Array(T.Object({ id: Id, description: T.String(), action: T.String() }, { additionalProperties: false }))),
    bundles: T.Optional(T.Array(T.Object({ id: Id, description: T.String(), scopes: T.Array(Id, { minItems: 1 }) }, { additionalProperties: false }))),
    companions: T.Optional(T.Array(T.Object({ scopes: T.Array(Id, { minItems: 2 }), note: T.String() }, { additionalProperties: false }))),
    recipes: T.Optional(T.Array(T.Object({ task: T.String(), scopes: T.Array(Id, { minItems: 1 }), note: T.Optional(T.String()) }, { additionalProperties: false }))),
    limits: T.Optional(
      T.Object(
        {
          perMinute: T.Optional(T.Integer({ minimum: 1 })),
          tiers: T.Optional(
            T.Array(
              T.Object(
                {
                  id: T.String({ pattern: "^[a-z][a-z0-9_-]*$" }),
                  description: T.String(),
                  perMinute: T.Integer({ minimum: 1 }),
                  perDay: T.Optional(T.Integer({ minimum: 1 })),
                  perSecond: T.Optional(T.Integer({ minimum: 1 })),
                },
                { additionalProperties: false },
              ),
            ),
          ),
          defaultTier: T.Optional(T.String()),
          portalRequestsPerSecond: T.Optional(T.Integer({ minimum: 1 })),
          portalLimitCode: T.Optional(T.String()),
          failedAuthPerMinute: T.Optional(T.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    methodDefaults: T.Optional(T.Record(T.String(), T.String())),
    routes: T.Array(Route),
    errors: T.Object(
      {
        insufficientScope: CodeByKeyType,
        pendingReissue: T.Optional(T.String()),
        keyTypeNotAllowed: CodeByKeyType,
      },
      { additionalProperties: false },
    ),
    envelope: T.Optional(T.Union([T.Literal("vibecode"), T.Literal("flat")])),
    errorCodes: T.Optional(T.Record(T.String({ pattern: "^[A-Z][A-Z0-9_]*$" }), T.Object({ status: T.Integer({ minimum: 400, maximum: 599 }), message: T.String() }, { additionalProperties: false }))),
  },
  { additionalProperties: false },
);

export type ProfileData = Static<typeof ProfileSchema>;

/** Structural problems of a profile document, each with its JSON path. */
export function profileShapeProblems(data: unknown): string[] {
  return [...Value.Errors(ProfileSchema, data)].map((e) => `${e.path || "/"}: ${e.message}`);
}

/** Compile-time check that the schema and the TypeScript type describe the same thing. */
export function asSpec(data: ProfileData): ProfileSpec {
  return data;
}
