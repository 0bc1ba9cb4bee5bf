import type { Profile } from "../core/profile/profile.ts";
import type { CompiledScopes } from "../core/scopes/grants.ts";
import type { VerifiedKey } from "../core/verify/decide.ts";
import type { KeyRecord, Store } from "../store/store.ts";

export interface CachedKey {
  record: KeyRecord;
  verified: VerifiedKey;
  /** What is worked out from the key and the data around it (its limits, its /v1/me body), by name. */
  derived: Map<string, { generation: number; value: unknown }>;
  /** Used since the cache last looked at it for eviction (second chance: see KeyCache). */
  recent: boolean;
}

/** Scope names and compiled scope sets kept for sharing: far more than a deployment has distinct ones. */
const MAX_NAMES = 10_000;
/** Digests the store did not know, remembered this long and this many: a repeated guess costs no lookup. */
const UNKNOWN_TTL_MS = 60_000;
const MAX_UNKNOWN = 10_000;

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Keys by digest, so a request on a known key touches no database. Every stored change of a key
 * invalidates it here before the change is reported, so the very next request sees it. A load
 * that raced with an invalidation is used for its own request but not cached. Digests the store
 * did not know are remembered for a minute, so a repeated unknown key costs no lookup; a key
 * stored since (its creation invalidates its digest) is found at once.
 *
 * The cache holds at most `max` keys (default 100,000) and evicts the least recently used, by
 * the second-chance (CLOCK) approximation of LRU: a hit only sets a flag (a Map reorder per hit
 * would cost the hot path); when a key must leave, the oldest-inserted ones used since are moved
 * to the back with their flag cleared, and the first one not used since leaves.
 */
export class KeyCache {
  readonly #profile: Profile;
  readonly #store: Store;
  readonly #max: number;
  readonly #byDigest = new Map<string, CachedKey>();
  readonly #digestById = new Map<string, string>();
  readonly #names = new Map<string, string>();
  readonly #compiledBySignature = new Map<string, CompiledScopes>();
  /** Unknown digests → until when they count as unknown; oldest first. */
  readonly #unknown = new Map<string, number>();
  readonly #now: () => number;
  #generation = 0;
  /** Lookups answered from the cache, and read from the store (or known unknown), since start: for /metrics. */
  hits = 0;
  misses = 0;
  /** Bumped by every stored change: derived values computed before it are stale. */
  #dataGeneration = 0;

  /** `max`: keys held at most (default 100,000). */
  constructor(profile: Profile, store: Store, options: { max?: number; now?: () => number } = {}) {
    this.#profile = profile;
    this.#store = store;
    this.#max = options.max ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#byDigest.size;
  }

  get(digest: string): CachedKey | undefined {
    const entry = this.#byDigest.get(digest);
    if (entry !== undefined) {
      entry.recent = true;
      this.hits++;
    }
    return entry;
  }

  /** Whether the store did not know this digest a moment ago (then `load` answers undefined without asking it). */
  unknown(digest: string): boolean {
    const until = this.#unknown.get(digest);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#unknown.delete(digest);
    return false;
  }

  /** Reads a key the cache does not hold; synchronous when the store reads synchronously (SQLite) or the digest is known to be unknown. */
  load(digest: string): CachedKey | undefined | Promise<CachedKey | undefined> {
    this.misses++;
    if (this.unknown(digest)) return undefined;
    const generation = this.#generation;
    if (this.#store.getKeyByDigestNow) return this.#enter(digest, this.#store.getKeyByDigestNow(digest), generation);
    return this.#store.getKeyByDigest(digest).then((record) => this.#enter(digest, record, generation));
  }

  /** A loaded key, compiled; kept unless the cache was invalidated while it loaded. */
  #enter(digest: string, record: KeyRecord | undefined, generation: number): CachedKey | undefined {
    if (!record) {
      if (generation === this.#generation) this.#rememberUnknown(digest);
      return undefined;
    }
    const keyType = this.#profile.keyType(record.type);
    if (!keyType) return undefined;
    // A cached key is kept for long and there are many: share what other keys hold the same of.
    record.digest = digest;
    record.type = keyType.id;
    record.scopes = this.#shared(record.scopes);
    record.issuedScopes = sameList(record.issuedScopes, record.scopes) ? record.scopes : this.#shared(record.issuedScopes);
    const entry: CachedKey = {
      record,
      verified: {
        id: record.id,
        name: record.name,
        status: record.status,
        expiresAt: record.expiresAt,
        accessMode: record.accessMode,
        keyType,
        ipAllow: record.ipWhitelist.length > 0 ? new Set(record.ipWhitelist) : null,
        scopes: this.#compiled(record),
      },
      derived: new Map(),
      recent: false,
    };
    if (generation === this.#generation) {
      if (this.#byDigest.size >= this.#max) this.#evictOldest();
      this.#byDigest.set(digest, entry);
      this.#digestById.set(record.id, digest);
    }
    return entry;
  }

  /** Moves on with every stored change (dataChanged): what was read of the store before may be stale (app sessions compare it). */
  get dataGeneration(): number {
    return this.#dataGeneration;
  }

  /**
   * A value worked out from a key and the data around it (portals, members, other keys), kept
   * until the key or any stored data changes.
   */
  async derive<T>(entry: CachedKey, name: string, compute: () => Promise<T>): Promise<T> {
    const hit = this.peek<T>(entry, name);
    if (hit !== undefined) return hit;
    const generation = this.#dataGeneration;
    const value = await compute();
    if (generation === this.#dataGeneration) entry.derived.set(name, { generation, value });
    return value;
  }

  /** `derive` for a value worked out without I/O: no promise. */
  deriveNow<T>(entry: CachedKey, name: string, compute: () => T): T {
    const hit = this.peek<T>(entry, name);
    if (hit !== undefined) return hit;
    const value = compute();
    entry.derived.set(name, { generation: this.#dataGeneration, value });
    return value;
  }

  /** The derived value if it is current, without waiting (the hot path's way in). */
  peek<T>(entry: CachedKey, name: string): T | undefined {
    const hit = entry.derived.get(name);
    return hit && hit.generation === this.#dataGeneration ? (hit.value as T) : undefined;
  }

  /** Something stored changed (a portal, a membership, a key): derived values are recomputed. */
  dataChanged(): void {
    this.#dataGeneration++;
  }

  /**
   * A key changed: its cached copy leaves — unless `storedVersion` (the version the change brought
   * the key to, from the change feed) says the copy is that change or newer. Derived values are
   * recomputed either way.
   */
  invalidate(key: { id: string; digest: string }, storedVersion?: number): void {
    this.#dataGeneration++;
    if (storedVersion !== undefined) {
      const digest = this.#digestById.get(key.id);
      const cached = digest === undefined ? undefined : this.#byDigest.get(digest);
      if (cached !== undefined && cached.record.version >= storedVersion) return;
    }
    this.#generation++;
    this.#unknown.delete(key.digest);
    this.#byDigest.delete(key.digest);
    const digest = this.#digestById.get(key.id);
    if (digest !== undefined) this.#byDigest.delete(digest);
    this.#digestById.delete(key.id);
  }

  /** Anything may have changed (a node that could not read the change feed for long): every key is read again. */
  clear(): void {
    this.#dataGeneration++;
    this.#generation++;
    this.#unknown.clear();
    this.#byDigest.clear();
    this.#digestById.clear();
  }

  /**
   * A key's compiled scopes, shared by every key of the same type and scope lists: keys are
   * mostly made from a few sets of scopes, and a compiled set is read-only.
   */
  #compiled(record: KeyRecord): CompiledScopes {
    const signature = `${record.type}\u0000${record.scopes.join(",")}\u0000${record.issuedScopes.join(",")}`;
    let compiled = this.#compiledBySignature.get(signature);
    if (compiled === undefined) {
      if (this.#compiledBySignature.size >= MAX_NAMES) this.#compiledBySignature.clear();
      compiled = this.#profile.compileKey(record.type, { scopes: record.scopes, issued: record.issuedScopes });
      this.#compiledBySignature.set(signature, compiled);
    }
    return compiled;
  }

  /** The list with each scope name as one string shared by every cached key (the catalog's names repeat across keys). */
  #shared(scopes: string[]): string[] {
    for (let i = 0; i < scopes.length; i++) {
      const name = scopes[i]!;
      const kept = this.#names.get(name);
      if (kept === undefined) {
        if (this.#names.size < MAX_NAMES) this.#names.set(name, name);
      } else scopes[i] = kept;
    }
    return scopes;
  }

  #rememberUnknown(digest: string): void {
    this.#unknown.delete(digest);
    if (this.#unknown.size >= MAX_UNKNOWN) this.#unknown.delete(this.#unknown.keys().next().value!);
    this.#unknown.set(digest, this.#now() + UNKNOWN_TTL_MS);
  }

  /** Evicts the least recently used key, near enough: each key used since its last look gets a second chance at the back. */
  #evictOldest(): void {
    for (const [digest, entry] of this.#byDigest) {
      this.#byDigest.delete(digest);
      if (entry.recent) {
        entry.recent = false;
        this.#byDigest.set(digest, entry);
        continue;
      }
      this.#digestById.delete(entry.record.id);
      return;
    }
  }
}
