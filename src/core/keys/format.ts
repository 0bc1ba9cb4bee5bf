import { hash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

/**
 * The key format: `<type prefix><32 base62 random characters><6 base62 checksum characters>`,
 * e.g. `vibe_api_` + 38 characters. 32 base62 characters carry 190 bits of randomness. The
 * checksum (CRC-32 of prefix and body) lets a typo or a random string be rejected before any
 * store lookup, and the fixed shape lets secret scanners find leaked keys
 * (see `scannerPattern`).
 */
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
export const BODY_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
/** Characters of the secret shown in `keyPrefix` after the type prefix. */
const DISPLAY_LENGTH = 6;

function checksum(prefixAndBody: string): string {
  let n = crc32(prefixAndBody);
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 62]! + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/** Uniform base62 characters from random bytes (rejection sampling: no modulo bias). */
function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248) out += ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

export function generateKey(prefix: string): string {
  const head = prefix + randomBase62(BODY_LENGTH);
  return head + checksum(head);
}

export interface KeyFormat {
  /** The key type whose prefix the key carries, or undefined when it is not a well-formed key. */
  parse(raw: string): string | undefined;
  /** A regular expression (source) that matches keys of these types, for secret scanners. */
  readonly scannerPattern: string;
  /** The length of the longest well-formed key: anything longer is not one. */
  readonly maxLength: number;
}

/** Recognises keys of the given key types ({id, prefix}); nothing here touches a store. */
export function keyFormat(types: readonly { id: string; prefix: string }[]): KeyFormat {
  const escaped = types.map((t) => t.prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const shape = new RegExp(`^(${escaped.join("|")})[0-9A-Za-z]{${BODY_LENGTH + CHECKSUM_LENGTH}}$`);
  const byPrefix = new Map(types.map((t) => [t.prefix, t.id]));
  return {
    parse(raw) {
      const m = shape.exec(raw);
      if (!m) return undefined;
      const split = raw.length - CHECKSUM_LENGTH;
      if (checksum(raw.slice(0, split)) !== raw.slice(split)) return undefined;
      return byPrefix.get(m[1]!);
    },
    scannerPattern: `\\b(?:${escaped.join("|")})[0-9A-Za-z]{${BODY_LENGTH + CHECKSUM_LENGTH}}\\b`,
    maxLength: Math.max(0, ...types.map((t) => t.prefix.length)) + BODY_LENGTH + CHECKSUM_LENGTH,
  };
}

/**
 * What is stored instead of the key: SHA-256 over the server secret and the key. Keys carry
 * 190 random bits, so a fast hash is enough (no password-style stretching); the server secret,
 * kept outside the database, makes a stolen database useless for checking guesses offline.
 */
export function keyDigest(serverSecret: string, raw: string): string {
  return hash("sha256", serverSecret + raw, "base64url");
}

/** What the key looks like in lists: its type prefix plus the first characters, and the last four. */
export function keyDisplay(prefix: string, raw: string): { keyPrefix: string; keySuffix: string } {
  return { keyPrefix: raw.slice(0, prefix.length + DISPLAY_LENGTH), keySuffix: raw.slice(-4) };
}
