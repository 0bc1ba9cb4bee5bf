/**
 * Reading parameter values the way Bitrix24 does: they arrive as JSON (numbers, booleans) or as
 * form/query strings ("5", "Y"), so every reader takes both. Dates are written as Bitrix24
 * writes them: ISO 8601 with an offset, to the second (2026-11-22T12:00:00+00:00); the sandbox
 * keeps UTC.
 */

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A whole number from a number or a digit string; undefined otherwise. */
export function toInt(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) ? value : undefined;
  if (typeof value === "string" && /^\s*-?\d{1,15}\s*$/.test(value)) return Number(value);
  return undefined;
}

/** A finite number from a number or a numeric string ("1500.50", "1500,50"); undefined otherwise. */
export function toNumber(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (typeof value === "string" && /^\s*-?(\d+([.,]\d*)?|[.,]\d+)\s*$/.test(value)) return Number(value.trim().replace(",", "."));
  return undefined;
}

/** Y/N flags: true, "Y", "1", 1, "true" are yes; false, "N", "0", 0, "false", "" are no; undefined otherwise. */
export function toFlag(value: unknown): boolean | undefined {
  if (value === true || value === 1) return true;
  if (value === false || value === 0) return false;
  if (typeof value === "string") {
    const v = value.trim().toUpperCase();
    if (v === "Y" || v === "1" || v === "TRUE") return true;
    if (v === "N" || v === "0" || v === "FALSE" || v === "") return false;
  }
  return undefined;
}

/** Epoch ms of a date (YYYY-MM-DD, at midnight UTC) or date-time (ISO 8601; without an offset: UTC); undefined otherwise. */
export function toTime(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  if (typeof value !== "string") return undefined;
  const text = value.trim();
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h = "00", mi = "00", s = "00", zone] = m;
  let iso = `${y}-${mo}-${d}T${h}:${mi}:${s}`;
  iso += zone === undefined || zone === "Z" ? "Z" : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? undefined : ms;
}

/** A time as Bitrix24 writes it: 2026-11-22T12:00:00+00:00. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "+00:00");
}

/** The date of a time at midnight UTC, as Bitrix24 writes a date field: 2026-11-22T00:00:00+00:00. */
export function isoDate(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 10)}T00:00:00+00:00`;
}

/** A string parameter: strings as they are, numbers as text; undefined for anything else. */
export function toText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}

/** The value as a list: arrays as they are, objects as their values (form encoding), one value as a list of one, null/undefined/"" as []. */
export function toList(value: unknown): unknown[] {
  if (Array.isArray(value)) return value;
  if (value === undefined || value === null || value === "") return [];
  if (isRecord(value)) return Object.values(value);
  return [value];
}

/** Where a string holding NUL is, as a path; undefined when none does (PostgreSQL cannot keep one in JSON). */
export function nulPath(value: unknown, path = ""): string | undefined {
  if (typeof value === "string") return value.includes("\u0000") ? path || "(value)" : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = nulPath(value[i], `${path}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (isRecord(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (k.includes("\u0000")) return `${path}[…]`;
      const found = nulPath(v, path === "" ? k : `${path}[${k}]`);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** camelCase → UPPER_SNAKE (assignedById → ASSIGNED_BY_ID). */
export function upperSnake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

/** UPPER_SNAKE → lowerCamel (RESPONSIBLE_ID → responsibleId). */
export function lowerCamel(name: string): string {
  return name.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}
