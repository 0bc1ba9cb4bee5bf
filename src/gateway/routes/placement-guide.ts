/**
 * The `placements` object of an authorization key's GET /v1/me (seed 003, "Embedding an app in
 * the portal": the model "gets the placements section with the full embedding procedure"): the
 * steps, with this keygate's URLs, from a session to a user opening the app in the portal
 * (docs/placements.md), and `auth.gatewayInjected`: how the app server learns who opened it.
 */
import { placementHandlerUrl } from "../../apps/placement-handler.ts";
import type { Server } from "../../store/servers.ts";

type Availability = { available: boolean; reason?: string };

export interface PlacementGuideFacts {
  /** The key's portal, when it is a sandbox portal: its page lists what is bound, to open it as a member. */
  sandboxPortalId: string | null;
  /** The servers registered with the key: the apps keygate's handler can open. */
  servers: Server[];
}

export function placementGuide(base: string, facts: PlacementGuideFacts, availability: (method: string, path: string) => Availability) {
  const handler = placementHandlerUrl(base, "<server id>");
  const headers = "X-Api-Key: <this key> + Authorization: Bearer <session token of a portal administrator>";
  const sandboxPage = facts.sandboxPortalId === null ? null : `${base}/sandbox/${encodeURIComponent(facts.sandboxPortalId)}/placements`;
  return {
    bind: availability("POST", "/v1/placements/bind"),
    headers,
    steps: [
      `1. Get a session token of a portal administrator (Bitrix24 lets administrators bind placements): send them to oauth.authorizeUrl, then POST ${base}/v1/oauth/token`,
      `2. POST ${base}/v1/infra/servers {"name": "My app", "url": "https://<your app server>"} — register the app's server: keygate's app runtime serves it to the portal's users at its appUrl`,
      `3. GET ${base}/v1/placements/available — the places of the portal the app can be embedded in (LEFT_MENU, CRM_DEAL_DETAIL_TAB, …); ?scope=crm for one scope's`,
      `4. POST ${base}/v1/placements/bind {"placement": "LEFT_MENU", "title": "My app"} — without handler, keygate's placement handler (${handler}) opens the key's only server; "serverId" picks one of several; "handler" binds your own URL instead`,
      `5. A user opens the app in the portal: the portal posts AUTH_ID, member_id, DOMAIN, PLACEMENT, PLACEMENT_OPTIONS to the handler, which checks them against the portal and sends the browser to <appUrl>/?placement=…&member_id=…[&placement_options=…]&__init=<one-time token>; the app runtime exchanges __init for its cookie`,
      "6. The app server reads X-Vibe-Authorization: Bearer vibe_session_… from each request (auth.gatewayInjected) and calls the API with X-Api-Key: <this key> + Authorization: Bearer <that session token>; GET /v1/me answers currentUser.bitrixUserId",
      `7. GET ${base}/v1/placements — what the app is bound to, with the handlers; POST ${base}/v1/placements/unbind {"placement": "LEFT_MENU", "handler"?} removes it`,
      ...(sandboxPage === null ? [] : [`8. On this sandbox portal, ${sandboxPage} (signed in to keygate as a member) lists what is bound: Open posts to the handler exactly what Bitrix24 posts`]),
    ],
    handler,
    servers: facts.servers.map((s) => ({ id: s.id, name: s.name, handler: placementHandlerUrl(base, s.id) })),
    sandboxPage,
    docs: `${base}/v1/guide`,
  };
}

/** auth.gatewayInjected of an authorization key's GET /v1/me (seed 003): the header the app runtime adds to every request to the app server. */
export function gatewayInjected(base: string) {
  return {
    description:
      "For an app embedded in Bitrix24 via a placement and running behind keygate's app runtime, the Gateway authenticates the user itself and injects the header on every request. The browser never sees the token.",
    header: "X-Vibe-Authorization: Bearer vibe_session_*",
    docs: `${base}/v1/guide`,
  };
}
