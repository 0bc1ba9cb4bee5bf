/** keygate as a library: profiles, the scope engine and its decisions, and verification in process. */
export { ERRORS, KeygateError, type ErrorDef } from "./core/errors.ts";
export { generateKey, keyDigest, keyFormat, type KeyFormat } from "./core/keys/format.ts";
export { Profile, type ExplainedResource, type Route, type RouteAccess } from "./core/profile/profile.ts";
export type * from "./core/profile/spec.ts";
export { ProfileError } from "./core/scopes/catalog.ts";
export { ALLOWED, satisfies, type Allowed, type Decision, type Denied, type Requirement } from "./core/scopes/check.ts";
export type { CompiledScopes, KeyScopes } from "./core/scopes/grants.ts";
export { tokenize, type ScopeList, type ScopeProblem } from "./core/scopes/normalize.ts";
export { adviseScopes, CONFIDENT_DAYS, CONFIDENT_REQUESTS, type NeededNotHeld, type ObservedRoute, type ObservedUse, type ScopeAdvice, type SuggestedScope } from "./core/scopes/advice.ts";
export { BUILTIN_PROFILES, DEFAULT_PROFILE, compileProfileData, loadProfile } from "./profiles/index.ts";
export { ProfileSchema } from "./profiles/schema.ts";
export { createVerifier, type Verifier, type VerifierOptions, type VerifyOutcome, type VerifyRequest } from "./gateway/verifier.ts";
export { openStore, type OpenStoreOptions, type Store } from "./store/index.ts";
