/**
 * The authorization of an app on a real Bitrix24 portal (issue 15 §2, docs/oauth.md "Real
 * Bitrix24 portals"): after the user allows the app on keygate's consent page, keygate sends the
 * browser to the portal's own authorization (Bitrix24's "full OAuth protocol",
 * apidocs.bitrix24.com/settings/oauth):
 *
 *     <portal>/oauth/authorize/?client_id=…&response_type=code&redirect_uri=<keygate>/v1/oauth/bitrix24/callback&state=…
 *
 * Bitrix24 sends it back with ?code&state&domain&member_id&scope&server_domain; keygate exchanges
 * the code at the token server for the user's tokens, stores them (bitrix24-tokens.ts) and only
 * then issues the app's own code, as the sandbox flow does at once.
 *
 * The state keygate sends is the pending authorization itself, encrypted and authenticated (a JWE,
 * dir + A256GCM under a key derived from the server secret) and valid 10 minutes: any node opens
 * it, and the portal learns nothing of the app's state or redirect URI from it.
 */
import { EncryptJWT, jwtDecrypt } from "jose";
import { KeygateError } from "../core/errors.ts";
import type { Keygate } from "../manage/context.ts";
import { derivedKey } from "../store/credentials.ts";
import type { Portal } from "../store/store.ts";
import type { Bitrix24App } from "./bitrix24-tokens.ts";

export const CALLBACK_PATH = "/v1/oauth/bitrix24/callback";
/** How long the user has on the portal's authorization page. */
export const PENDING_TTL_S = 600;
const AUDIENCE = "keygate bitrix24 callback";

/** An authorization the user allowed on keygate's consent page, waiting for the portal's. */
export interface PendingAuthorization {
  keyId: string;
  portalId: string;
  userId: string;
  state: string;
  redirectUri: string | null;
  codeChallenge: string | null;
}

const stateKey = (serverSecret: string): Uint8Array => derivedKey(serverSecret, "keygate bitrix24 oauth state v1");

/** The portal's Bitrix24 application, when its upstream is a Bitrix24 portal with one. */
export function bitrix24AppOf(portal: Portal): Bitrix24App | undefined {
  const upstream = portal.upstream;
  if (upstream?.kind !== "bitrix24" || upstream.clientId === undefined || upstream.clientSecret === undefined) return undefined;
  return { clientId: upstream.clientId, clientSecret: upstream.clientSecret };
}

/**
 * The portal's address, from its webhook URL without /rest/<user id>/<token>/: https://<portal>
 * for a real portal, http://<keygate>/sandbox/<portal id> for the sandbox standing in for one.
 */
export function portalBase(webhookUrl: string): string {
  return webhookUrl.replace(/\/rest\/\d+\/[^/]+\/?$/, "");
}

/** Where the browser goes to authorize the app on the portal. */
export async function portalAuthorizeUrl(kg: Keygate, portal: Portal, app: Bitrix24App, pending: PendingAuthorization, callbackUrl: string): Promise<string> {
  if (portal.upstream?.kind !== "bitrix24") throw new Error("not a Bitrix24 portal");
  const now = Math.floor(kg.now() / 1000);
  const state = await new EncryptJWT({ ...pending })
    .setProtectedHeader({ alg: "dir", enc: "A256GCM" })
    .setAudience(AUDIENCE)
    .setIssuedAt(now)
    .setExpirationTime(now + PENDING_TTL_S)
    .encrypt(stateKey(kg.serverSecret));
  const url = new URL(`${portalBase(portal.upstream.webhookUrl)}/oauth/authorize/`);
  for (const [name, value] of Object.entries({ client_id: app.clientId, response_type: "code", redirect_uri: callbackUrl, state })) url.searchParams.set(name, value);
  return url.href;
}

/** The pending authorization of a callback's state; 400 INVALID_REQUEST when it is not one keygate made, or is older than 10 minutes. */
export async function openPending(kg: Keygate, state: string | undefined): Promise<PendingAuthorization> {
  const refused = (why: string) => new KeygateError("INVALID_REQUEST", { message: `state: ${why}: authorize the app again.`, param: "state" });
  if (state === undefined || state === "" || state.length > 4_000) throw refused("Required");
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtDecrypt(state, stateKey(kg.serverSecret), { audience: AUDIENCE, currentDate: new Date(kg.now()) }));
  } catch (error) {
    throw refused((error as { code?: string }).code === "ERR_JWT_EXPIRED" ? "the authorization on the portal took longer than 10 minutes" : "not an authorization this keygate started");
  }
  const text = (name: string) => (typeof payload[name] === "string" ? (payload[name] as string) : null);
  const keyId = text("keyId");
  const portalId = text("portalId");
  const userId = text("userId");
  const appState = text("state");
  if (keyId === null || portalId === null || userId === null || appState === null) throw refused("not an authorization this keygate started");
  return { keyId, portalId, userId, state: appState, redirectUri: text("redirectUri"), codeChallenge: text("codeChallenge") };
}
