/**
 * The `placements` object of an authorization key's GET /v1/me (seed 003, "Embedding an app in
 * the portal": the model "gets the placements section with the full embedding procedure"): the
 * steps, with this keygate's URLs, of what it serves. keygate's own placement handler is offered
 * only where it is served (docs/placements.md).
 */
type Availability = { available: boolean; reason?: string };

export function placementGuide(base: string, keyId: string, served: (route: string) => boolean, availability: (method: string, path: string) => Availability) {
  const ownHandler = served("POST /v1/bitrix-handler") ? `${base}/v1/bitrix-handler?app=${encodeURIComponent(keyId)}` : null;
  const headers = "X-Api-Key: <this key> + Authorization: Bearer <session token of a portal administrator>";
  return {
    bind: availability("POST", "/v1/placements/bind"),
    headers,
    steps: [
      `1. Get a session token of a portal administrator (Bitrix24 lets administrators bind placements): send them to oauth.authorizeUrl, then POST ${base}/v1/oauth/token`,
      `2. GET ${base}/v1/placements/available — the places of the portal the app can be embedded in (LEFT_MENU, CRM_DEAL_DETAIL_TAB, …); ?scope=crm for one scope's`,
      ownHandler === null
        ? `3. POST ${base}/v1/placements/bind {"placement": "LEFT_MENU", "title": "My app", "handler": "https://<your app>/placement"} — handler: your app's https URL, which Bitrix24 posts to (AUTH_ID, member_id, PLACEMENT, PLACEMENT_OPTIONS) when a user opens the app there`
        : `3. POST ${base}/v1/placements/bind {"placement": "LEFT_MENU", "title": "My app"} — without handler, keygate's placement handler (${ownHandler}) receives the user and opens the app`,
      `4. GET ${base}/v1/placements — what the app is bound to, with the handlers`,
      `5. POST ${base}/v1/placements/unbind {"placement": "LEFT_MENU", "handler"?} — remove it (without handler: every handler of the app there)`,
    ],
    handler: ownHandler,
    docs: `${base}/v1/guide`,
  };
}
