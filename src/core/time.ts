/** Whether a YYYY-MM-DD names a real calendar day (Date.parse rolls 2099-02-30 over to March 2). */
export function realDay(year: number, month: number, day: number): boolean {
  const d = new Date(Date.UTC(2000, month - 1, day));
  d.setUTCFullYear(year);
  return d.getUTCMonth() === month - 1 && d.getUTCDate() === day;
}

const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:T([01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d))?$/;

/**
 * An ISO-8601 date (2026-12-05, midnight UTC) or a date-time with its zone (2026-12-05T10:00:00Z,
 * 2026-12-05T12:00+02:00) as epoch milliseconds; undefined for anything else, where Date.parse
 * would take "-5" as the year 5 BC and a day that does not exist as one that does.
 */
export function parseIsoTime(value: string): number | undefined {
  const m = ISO_TIME.exec(value);
  if (!m || !realDay(Number(m[1]), Number(m[2]), Number(m[3]))) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}
