import { Type as T } from "@sinclair/typebox";
import type { IdentitySigner } from "../../upstream/http/identity.ts";
import type { App } from "../server.ts";

const Jwk = T.Object({
  kty: T.Literal("OKP"),
  crv: T.Literal("Ed25519"),
  x: T.String({ description: "The public key, base64url" }),
  kid: T.String({ description: "The key's RFC 7638 thumbprint; an assertion's header names it" }),
  alg: T.Literal("EdDSA"),
  use: T.Literal("sig"),
});

/**
 * GET /.well-known/jwks.json: the public keys upstreams verify `X-Keygate-Identity` with
 * (docs/upstreams.md, "The identity assertion"). Public, unauthenticated, not enveloped (JOSE
 * libraries read the document as RFC 7517 writes it). The keys are derived once, when the server
 * starts.
 */
export function jwksRoute(app: App, signer: IdentitySigner): void {
  app.get(
    "/.well-known/jwks.json",
    {
      schema: {
        operationId: "getJwks",
        summary: "The public keys of the X-Keygate-Identity assertions (a JWK Set, not enveloped): the current signing key and those of the generations beside it",
        tags: ["self"],
        security: [],
        response: { 200: T.Object({ keys: T.Array(Jwk) }, { description: "RFC 7517 JWK Set" }) },
      },
    },
    // Upstreams cache it; a kid they do not know sends them back for a fresh copy.
    async (_request, reply) => reply.type("application/json; charset=utf-8").header("cache-control", "public, max-age=300").send(signer.jwks),
  );
}
