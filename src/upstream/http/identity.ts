import { type KeyObject, createHash, createHmac, createPrivateKey, createPublicKey, sign } from "node:crypto";

/**
 * The caller's identity as an upstream receives it: one signed assertion, a compact JWS in the
 * `X-Keygate-Identity` header (the convention of Cloudflare Access and Google IAP), signed with
 * Ed25519 (`alg: EdDSA`). The public keys are served at `GET /.well-known/jwks.json`, so an
 * upstream verifies it with any JOSE library (docs/upstreams.md, "The identity assertion").
 *
 * An assertion names the key, not the request: keygate signs one per key and audience and sends it
 * on every request of that key until shortly before it expires (src/gateway/identity.ts), so a
 * forwarded request costs a lookup, not a signature. Signing uses node:crypto directly: it is
 * synchronous, and the forwarding path awaits nothing.
 */

export const IDENTITY_HEADER = "x-keygate-identity";
/** An assertion is valid this long (seconds). */
export const ASSERTION_LIFETIME_S = 300;
/** …and replaced this long before it expires (seconds), so an upstream never gets one about to lapse. */
export const RENEW_BEFORE_S = 60;

/** What keygate asserts about the key of a request (the JWT claims besides iss, iat and exp). */
export interface IdentityClaims {
  /** The upstream the assertion is for: the portal's HTTP upstream base URL, or the original request's origin (forward-auth). */
  aud: string;
  /** The key's id. */
  sub: string;
  /** The key type id of the profile (`api`). */
  key_type: string;
  /** The key's portal; null for a key bound to none. */
  portal: string | null;
  /** The user who owns the key. */
  owner: string;
  /** The scopes in effect, normalised. */
  scopes: string[];
  /** READWRITE or READONLY. */
  access_mode: string;
}

/** A public key as the JWKS document gives it (RFC 8037). */
export interface PublicJwk {
  kty: "OKP";
  crv: "Ed25519";
  x: string;
  kid: string;
  alg: "EdDSA";
  use: "sig";
}

interface SigningKey {
  generation: number;
  kid: string;
  privateKey: KeyObject;
  jwk: PublicJwk;
}

/** PKCS #8 wrapping of a raw Ed25519 seed (RFC 8410): node:crypto imports the seed through it. */
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * The signing key of a generation, derived from the server secret: every node that shares the
 * secret derives the same keys, so nothing is stored and nothing has to be copied between nodes.
 * Its kid is the key's RFC 7638 thumbprint.
 */
function signingKey(serverSecret: string, generation: number): SigningKey {
  const seed = createHmac("sha256", serverSecret).update(`keygate/identity-signing/v1\u0000${generation}`).digest();
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: "der", type: "pkcs8" });
  const x = createPublicKey(privateKey).export({ format: "jwk" }).x!;
  const kid = createHash("sha256").update(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`).digest("base64url");
  return { generation, kid, privateKey, jwk: { kty: "OKP", crv: "Ed25519", x, kid, alg: "EdDSA", use: "sig" } };
}

export interface IdentitySignerOptions {
  serverSecret: string;
  /**
   * The key generation keygate signs with (default 1). Keys are rotated by raising it on every
   * node: each node publishes the generation before and after its own, so during a rolling change
   * every key any node signs with is in every node's JWKS (docs/upstreams.md, "Rotating the keys").
   */
  generation?: number;
  /** The `iss` claim: keygate's public URL, or "keygate". */
  issuer: string;
}

export interface IdentitySigner {
  readonly issuer: string;
  /** The kid new assertions carry. */
  readonly kid: string;
  /** The JWKS document: the keys of the generations before, at and after the current one. */
  readonly jwks: { keys: PublicJwk[] };
  /** A compact JWS of the claims, issued at `iat` (epoch seconds), valid ASSERTION_LIFETIME_S. */
  sign(claims: IdentityClaims, iat: number): string;
}

export function identitySigner(options: IdentitySignerOptions): IdentitySigner {
  const generation = options.generation ?? 1;
  if (!Number.isSafeInteger(generation) || generation < 1) throw new RangeError(`the identity key generation must be a whole number from 1, not ${generation}`);
  const current = signingKey(options.serverSecret, generation);
  const published = [generation - 1, generation, generation + 1].filter((g) => g >= 1).map((g) => (g === generation ? current : signingKey(options.serverSecret, g)));
  const header = Buffer.from(JSON.stringify({ alg: "EdDSA", typ: "JWT", kid: current.kid })).toString("base64url");
  const issuer = options.issuer;
  return {
    issuer,
    kid: current.kid,
    jwks: { keys: published.map((k) => k.jwk) },
    sign(claims, iat) {
      const payload = Buffer.from(JSON.stringify({ iss: issuer, ...claims, iat, exp: iat + ASSERTION_LIFETIME_S })).toString("base64url");
      const input = `${header}.${payload}`;
      return `${input}.${sign(null, Buffer.from(input), current.privateKey).toString("base64url")}`;
    },
  };
}
