/**
 * Upstream credentials at rest. A portal's upstream holds secrets — a Bitrix24 webhook's token,
 * an HTTP upstream's user:password and query tokens — so the stores keep the whole upstream
 * sealed with AES-256-GCM: `{"v":1,"iv":…,"ct":…,"tag":…}` (base64url), a random 12-byte IV
 * per write, the portal's id as additional authenticated data (a ciphertext copied onto another
 * portal's row does not open).
 *
 * The key is derived from the server secret (HKDF-SHA256): it lives where the secret lives (the
 * data directory's `secret` file or KEYGATE_SECRET), never in the database, and every node that
 * shares the secret opens what any node sealed. See docs/operations.md.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import type { Upstream } from "./store.ts";

const INFO = "keygate upstream credentials v1";
const IV_BYTES = 12;

interface Sealed {
  v: 1;
  iv: string;
  ct: string;
  tag: string;
}

/** Seals and opens portals' upstreams under the key derived from the server secret. */
export class UpstreamCipher {
  readonly #key: Buffer;

  constructor(serverSecret: string) {
    if (serverSecret === "") throw new Error("the server secret is empty: upstream credentials cannot be sealed");
    this.#key = Buffer.from(hkdfSync("sha256", serverSecret, "", INFO, 32));
  }

  /** The upstream as stored: the JSON text of its envelope. */
  seal(portalId: string, upstream: Upstream): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv).setAAD(Buffer.from(portalId));
    const ct = Buffer.concat([cipher.update(JSON.stringify(upstream), "utf8"), cipher.final()]);
    const sealed: Sealed = { v: 1, iv: iv.toString("base64url"), ct: ct.toString("base64url"), tag: cipher.getAuthTag().toString("base64url") };
    return JSON.stringify(sealed);
  }

  /**
   * The upstream of a stored value: a sealed envelope is opened (and throws when it was sealed
   * under another secret, for another portal, or altered); plain upstream JSON — written by a
   * keygate before issue 10.3, which the store seals when it opens — is returned as it is.
   */
  open(portalId: string, stored: string): Upstream {
    const value = JSON.parse(stored) as Sealed | Upstream;
    if (!isSealedValue(value)) return value;
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, Buffer.from(value.iv, "base64url")).setAAD(Buffer.from(portalId));
      decipher.setAuthTag(Buffer.from(value.tag, "base64url"));
      const plain = Buffer.concat([decipher.update(Buffer.from(value.ct, "base64url")), decipher.final()]);
      return JSON.parse(plain.toString("utf8")) as Upstream;
    } catch {
      throw new Error(
        `portal ${portalId}: its upstream credentials do not decrypt (sealed under another server secret or for another portal, or altered)`,
      );
    }
  }
}

function isSealedValue(value: unknown): value is Sealed {
  return typeof value === "object" && value !== null && (value as { v?: unknown }).v === 1 && typeof (value as { ct?: unknown }).ct === "string";
}
