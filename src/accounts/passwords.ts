import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { KeygateError } from "../core/errors.ts";

/**
 * Passwords, hashed with scrypt (node:crypto), a memory-hard function (docs/accounts.md).
 *
 * N = 2^15, r = 8, p = 1: 32 MiB and about 50–100 ms per hash on a current server core, the
 * interactive-login parameters of RFC 7914 §2 and of OWASP's password storage guidance; a 16-byte
 * random salt and a 32-byte result. The hash is stored as a PHC-style string,
 * `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` (base64), so each hash names its own parameters and they
 * can be raised later without breaking the passwords stored before.
 */
const PARAMS = { ln: 15, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const HASH_BYTES = 32;
/** Node refuses scrypt above maxmem (32 MiB by default): 128 × N × r is exactly 32 MiB here. */
const maxmemFor = (ln: number, r: number) => 256 * 2 ** ln * r;

/** Shorter passwords are refused; longer than MAX is refused too, so nobody makes keygate hash megabytes. */
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 1024;

function derive(password: string, salt: Buffer, ln: number, r: number, p: number, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password.normalize("NFC"), salt, length, { N: 2 ** ln, r, p, maxmem: maxmemFor(ln, r) }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

/** Refuses a password keygate will not store: VALIDATION_ERROR on `param`. */
export function checkPassword(password: string, param = "password"): void {
  const length = [...password].length;
  if (length < MIN_PASSWORD_LENGTH) throw new KeygateError("VALIDATION_ERROR", { message: `the password must have at least ${MIN_PASSWORD_LENGTH} characters`, param });
  if (length > MAX_PASSWORD_LENGTH) throw new KeygateError("VALIDATION_ERROR", { message: `the password must have at most ${MAX_PASSWORD_LENGTH} characters`, param });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, PARAMS.ln, PARAMS.r, PARAMS.p, HASH_BYTES);
  return `$scrypt$ln=${PARAMS.ln},r=${PARAMS.r},p=${PARAMS.p}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+=*)\$([A-Za-z0-9+/]+=*)$/;

/** A hash of a password nobody has: checked when there is no user, so an unknown email costs the same time as a wrong password. */
const NOBODY = hashPassword(randomBytes(24).toString("base64"));

/**
 * Whether the password matches the stored hash. With no hash (no such user, or no password set
 * yet) it does the same work against a hash of a random password and answers false, so the time
 * taken does not tell whether an account exists.
 */
export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const m = PHC.exec(stored ?? (await NOBODY));
  if (!m) return false;
  const expected = Buffer.from(m[5]!, "base64");
  const actual = await derive(password, Buffer.from(m[4]!, "base64"), Number(m[1]), Number(m[2]), Number(m[3]), expected.length);
  return stored !== null && timingSafeEqual(actual, expected);
}
