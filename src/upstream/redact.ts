/**
 * An upstream as keygate shows it — in portal views, audit entries and logs — with its
 * credentials masked: a Bitrix24 webhook's token, an HTTP upstream's user:password and the value
 * of every query parameter (any of them may be a token; the names stay, to tell them apart).
 */
import type { Upstream } from "../store/store.ts";
import { redactWebhookUrl } from "./bitrix24/client.ts";

const MASK = "***";

/** The base URL with user, password and every query value replaced by ***, the fragment dropped. */
export function redactBaseUrl(baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    return "(invalid URL)";
  }
  if (url.username !== "") url.username = MASK;
  if (url.password !== "") url.password = MASK;
  url.search = [...url.searchParams.keys()].map((name) => `${encodeURIComponent(name)}=${MASK}`).join("&");
  url.hash = "";
  return url.toString();
}

export function redactUpstream(upstream: Upstream): Upstream {
  switch (upstream.kind) {
    case "bitrix24":
      // The application's client_id is no secret (Bitrix24 puts it in every authorize URL); its client_secret is never shown.
      return upstream.clientId === undefined ? { kind: "bitrix24", webhookUrl: redactWebhookUrl(upstream.webhookUrl) } : { kind: "bitrix24", webhookUrl: redactWebhookUrl(upstream.webhookUrl), clientId: upstream.clientId };
    case "http":
      return { kind: "http", baseUrl: redactBaseUrl(upstream.baseUrl) };
    case "sandbox":
      return upstream;
  }
}
