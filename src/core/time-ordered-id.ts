/**
 * Time-ordered ids: UUIDv7 (RFC 9562 §5.7) — 48 bits of Unix milliseconds, then 74 bits that are
 * random for a new millisecond and the previous id's plus one within the same one (§6.2, method
 * 2), so ids made by one process sort, as text, in the order they were made, even when the clock
 * gives the same instant twice or steps back. Rows ordered by (created_at, id) keep their write
 * order without another column.
 */
import { randomBytes } from "node:crypto";

const RANDOM_BITS = 74n;
const RANDOM_LIMIT = 1n << RANDOM_BITS;

let lastMs = -1;
let lastRandom = 0n;

function random74(): bigint {
  // The top bit clear: room for 2^73 ids within one millisecond before its counter wraps.
  return BigInt(`0x${randomBytes(10).toString("hex")}`) & ((RANDOM_LIMIT >> 1n) - 1n);
}

/** A UUIDv7 for the instant `now` (epoch ms), greater than every earlier one this process made. */
export function timeOrderedId(now: number): string {
  const ms = Math.floor(now);
  if (ms > lastMs) {
    lastMs = ms;
    lastRandom = random74();
  } else if (++lastRandom === RANDOM_LIMIT) {
    lastMs += 1;
    lastRandom = random74();
  }
  // time (48 bits) | version 7 (4) | rand_a (12) | variant 0b10 (2) | rand_b (62)
  const randA = lastRandom >> 62n;
  const randB = lastRandom & ((1n << 62n) - 1n);
  const hex = ((BigInt(lastMs) << 80n) | (7n << 76n) | (randA << 64n) | (0b10n << 62n) | randB).toString(16).padStart(32, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
