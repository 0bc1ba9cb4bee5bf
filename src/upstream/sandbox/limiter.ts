/**
 * The sandbox's request limit, Bitrix24's: a leaky bucket per portal (apidocs.bitrix24.com,
 * "REST API Limits"). Every request (a batch counts once) adds one to the portal's counter; the
 * counter drains by requestsPerSecond every second; a request that would take it over
 * requestBurst is refused with 503 QUERY_LIMIT_EXCEEDED and not counted. Bitrix24's own values:
 * 50 and 2 per second (Enterprise plans: 250 and 5). Kept in memory, per server.
 */
export class LeakyBuckets {
  readonly #buckets = new Map<string, { level: number; at: number }>();

  /** Counts a request of the portal at `now` (epoch ms); false (not counted) when the bucket is full. */
  take(portalId: string, burst: number, perSecond: number, now: number): boolean {
    const bucket = this.#buckets.get(portalId);
    const elapsed = bucket === undefined ? 0 : Math.max(0, now - bucket.at);
    const level = bucket === undefined ? 0 : Math.max(0, bucket.level - (elapsed / 1000) * perSecond);
    const admitted = level + 1 <= burst;
    this.#buckets.set(portalId, { level: admitted ? level + 1 : level, at: now });
    return admitted;
  }
}
