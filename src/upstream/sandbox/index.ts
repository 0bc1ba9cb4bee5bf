/**
 * The sandbox portal: a Bitrix24-compatible REST server built into keygate, keeping its data in
 * keygate's store. docs/upstreams.md ("Bitrix24 and the sandbox portal") describes it.
 */
export { type SandboxRoutesOptions, MAX_BATCH, sandboxRoutes, tokenDigest } from "./routes.ts";
export {
  type CreateSandboxOptions,
  DEFAULT_LIMIT,
  keygateUserOf,
  SANDBOX_SCOPES,
  createSandbox,
  sandboxMemberWebhookToken,
  sandboxRootWebhookUrl,
  sandboxUserFor,
  sandboxWebhookPath,
  sandboxWebhookToken,
  sandboxWebhookUrl,
  seedDemoData,
  servedByBitrix24,
} from "./setup.ts";
export { BitrixFault } from "./fault.ts";
export { ACCESS_TTL_MS, sandboxApp, sandboxMemberId } from "./oauth.ts";
export { type SandboxServerOptions, sandboxServer } from "./server.ts";
