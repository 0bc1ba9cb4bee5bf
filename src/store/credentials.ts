/**
 * Secrets at rest. A portal's upstream holds secrets — a Bitrix24 webhook's token, an HTTP
 * upstream's user:password and query tokens — and so do users' Bitrix24 OAuth tokens and the app
 * runtime's sessions: the stores keep them sealed with AES-256-GCM:
 * `{"v":1,"iv":…,"ct":…,"tag":…}` (base64url), a random 12-byte IV per write, and the id of the
 * row's owner as additional authenticated data (a ciphertext copied onto another row does not open).
 *
 * Each kind of secret has a key of its own, derived from the server secret (HKDF-SHA256 with the
 * kind's name): it lives where the secret lives (the data directory's `secret` file or
 * KEYGATE_SECRET), never in the database, and every node that shares the secret opens what any
 * node sealed. See docs/operations.md.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import type { Upstream } from "./store.ts";

const IV_BYTES = 12;

interface Sealed {
  v: 1;
  iv: string;
  ct: string;
  tag: string;
}

const derived = new Map<string, Uint8Array>();

/** The 32-byte key for one purpose, derived from the server secret (HKDF-SHA256, the purpose as info); computed once a process. */
export function derivedKey(serverSecret: string, purpose: string): Uint8Array {
  const id = `${purpose}\u0000${serverSecret}`;
  let key = derived.get(id);
  if (key === undefined) derived.set(id, (key = new Uint8Array(hkdfSync("sha256", serverSecret, "", purpose, 32))));
  return key;
}

/** Seals and opens one kind of secret under its key derived from the server secret. */
export class SecretBox {
  readonly #key: Buffer;
  readonly #kind: string;

  /** `kind` names the secrets sealed (and derives their key): "keygate upstream credentials v1". */
  constructor(serverSecret: string, kind: string) {
    if (serverSecret === "") throw new Error(`the server secret is empty: ${kind} cannot be sealed`);
    this.#key = Buffer.from(derivedKey(serverSecret, kind));
    this.#kind = kind;
  }

  /** The sealed text of `plain`, bound to `owner` (the id of the row that keeps it). */
  seal(owner: string, plain: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv).setAAD(Buffer.from(owner));
    const ct = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    const sealed: Sealed = { v: 1, iv: iv.toString("base64url"), ct: ct.toString("base64url"), tag: cipher.getAuthTag().toString("base64url") };
    return JSON.stringify(sealed);
  }

  /** The plain text of a sealed value; throws when it was sealed under another secret, for another owner, or altered. */
  open(owner: string, stored: string): string {
    const value = JSON.parse(stored) as unknown;
    if (!isSealedValue(value)) throw new Error(`${owner}: its ${this.#kind} are not sealed`);
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, Buffer.from(value.iv, "base64url")).setAAD(Buffer.from(owner));
      decipher.setAuthTag(Buffer.from(value.tag, "base64url"));
      return Buffer.concat([decipher.update(Buffer.from(value.ct, "base64url")), decipher.final()]).toString("utf8");
    } catch {
      throw new Error(`${owner}: its ${this.#kind} do not decrypt (sealed under another server secret or for another owner, or altered)`);
    }
  }
}

/** Seals and opens portals' upstreams. */
export class UpstreamCipher {
  readonly #box: SecretBox;

  constructor(serverSecret: string) {
    this.#box = new SecretBox(serverSecret, "keygate upstream credentials v1");
  }

  /** The upstream as stored: the JSON text of its envelope. */
  seal(portalId: string, upstream: Upstream): string {
    return this.#box.seal(portalId, JSON.stringify(upstream));
  }

  /**
   * The upstream of a stored value: a sealed envelope is opened (and throws when it was sealed
   * under another secret, for another portal, or altered); plain upstream JSON — written by a
   * keygate before issue 10.3, which the store seals when it opens — is returned as it is.
   */
  open(portalId: string, stored: string): Upstream {
    const value = JSON.parse(stored) as unknown;
    if (!isSealedValue(value)) return value as Upstream;
    return JSON.parse(this.#box.open(portalId, stored)) as Upstream;
  }
}

function isSealedValue(value: unknown): value is Sealed {
  return typeof value === "object" && value !== null && (value as { v?: unknown }).v === 1 && typeof (value as { ct?: unknown }).ct === "string";
}
