import { type Limit, type Limiter, type LimitState, logShape, type Outcome, stateOf } from "./limiter.ts";

/**
 * A ring of `length` numbers: a plain array (two objects; a typed array takes three, and more
 * room), filled with a non-integer so that V8 keeps it as unboxed doubles from the start.
 */
const ring = (length: number): number[] => new Array<number>(length).fill(0.5);

/**
 * One subject's log of one limit (limiter.ts): a ring, oldest first. An exact log (group 1) keeps
 * one time per admitted unit (stride 1: 8 bytes a unit); a grouped one keeps per group its newest
 * time, its first time and its units (stride 3). The ring starts small and doubles as the subject
 * uses it: a subject that sends little costs little.
 */
class Log {
  windowMs: number;
  limit: number;
  group: number;
  /** Slots of `stride` numbers: [time] or [newest, first, units]. */
  stride: 1 | 3;
  ring: number[];
  /** Slots in the ring. */
  slots = 4;
  head = 0;
  size = 0;
  /** Units in the ring. */
  units = 0;
  /** Used since the limiter last looked at it for eviction (second chance: see MemoryLimiter). */
  recent = false;

  constructor(limit: Limit) {
    this.windowMs = limit.windowMs;
    this.limit = limit.limit;
    this.group = logShape(limit.limit).group;
    this.stride = this.group === 1 ? 1 : 3;
    this.ring = ring(this.slots * this.stride);
  }

  /** A limit changed (a key's rateLimit, a portal's requestLimit): the log so far keeps counting. */
  reshape(limit: Limit): void {
    this.windowMs = limit.windowMs;
    this.limit = limit.limit;
    this.group = logShape(limit.limit).group;
    // An exact log cannot hold groups: it becomes a grouped one (whose groups of 1 are exact too).
    if (this.group > 1 && this.stride === 1) this.#grow(this.slots, 3);
  }

  #at(k: number): number {
    const i = this.head + k;
    return (i < this.slots ? i : i - this.slots) * this.stride;
  }

  #first(at: number): number {
    return this.stride === 1 ? this.ring[at]! : this.ring[at + 1]!;
  }

  #units(at: number): number {
    return this.stride === 1 ? 1 : this.ring[at + 2]!;
  }

  /** Drops the groups that left the window: their newest time is at least W ago. */
  prune(now: number): void {
    const edge = now - this.windowMs;
    while (this.size > 0 && this.ring[this.head * this.stride]! <= edge) {
      this.units -= this.#units(this.head * this.stride);
      if (++this.head === this.slots) this.head = 0;
      this.size--;
    }
  }

  /** The units counted in the window (after prune): all, but of an oldest group that straddles its edge only the newest one. */
  used(now: number): number {
    if (this.stride === 1 || this.size === 0) return this.units;
    const oldest = this.head * 3;
    return this.ring[oldest + 1]! <= now - this.windowMs ? this.units - this.ring[oldest + 2]! + 1 : this.units;
  }

  /** Milliseconds until the log next gives units back (0: it holds none): its oldest group starts to straddle the edge, or leaves. */
  resetMs(now: number): number {
    if (this.size === 0) return 0;
    const oldest = this.head * this.stride;
    const first = this.#first(oldest);
    return (first + this.windowMs > now ? first : this.ring[oldest]!) + this.windowMs - now;
  }

  /** Milliseconds until `cost` fits, the log walked from its oldest group as time passes. */
  retryAfter(now: number, cost: number): number {
    const { limit, windowMs } = this;
    if (cost > limit) return windowMs; // never admitted: the longest meaningful wait
    if (this.stride === 1) {
      // One unit per slot: the one whose leaving makes room is found at once.
      return this.ring[this.#at(this.units + cost - limit - 1)]! + windowMs - now;
    }
    let units = this.units;
    let at = now;
    for (let k = 0; k < this.size; k++) {
      const g = this.#at(k);
      if (units + cost <= limit) return at - now; // the previous group has left
      // Once its first unit is a window old, the group counts 1 until its newest is.
      at = Math.max(at, this.ring[g + 1]! + windowMs);
      if (units - this.ring[g + 2]! + 1 + cost <= limit) return at - now;
      units -= this.ring[g + 2]!;
      at = this.ring[g]! + windowMs;
    }
    return at - now;
  }

  /**
   * Logs `cost` units at `now`: in the newest group while it holds at most `group` units with
   * them (or is a burst at this very instant), else in a new one.
   */
  add(now: number, cost: number): void {
    this.units += cost;
    if (this.stride === 1) {
      for (let i = 0; i < cost; i++) this.#push(now, now, 1);
      return;
    }
    if (this.size > 0) {
      const last = this.#at(this.size - 1);
      const newest = this.ring[last]!;
      const first = this.ring[last + 1]!;
      const units = this.ring[last + 2]!;
      if (units + cost <= this.group || (first === newest && newest >= now)) {
        // A clock that stepped back never makes a group look older than it is.
        this.ring[last] = Math.max(newest, now);
        this.ring[last + 2] = units + cost;
        return;
      }
    }
    this.#push(now, now, cost);
  }

  /** The newest time logged (NaN: none). */
  newest(): number {
    return this.size === 0 ? Number.NaN : this.ring[this.#at(this.size - 1)]!;
  }

  #push(newest: number, first: number, units: number): void {
    if (this.size === this.slots) {
      // Doubling, up to what the limit can hold in the window: an exact log of N never needs more than N slots, a grouped one about 100.
      const most = this.stride === 1 ? this.limit : Math.ceil(this.limit / this.group) + 2;
      this.#grow(Math.max(this.slots + 1, Math.min(this.slots * 2, most)), this.stride);
    }
    const at = this.#at(this.size);
    this.ring[at] = newest;
    if (this.stride === 3) {
      this.ring[at + 1] = first;
      this.ring[at + 2] = units;
    }
    this.size++;
  }

  /** Copies the log, oldest first, into a ring of `slots` slots of `stride` numbers. */
  #grow(slots: number, stride: 1 | 3): void {
    const next = ring(slots * stride);
    for (let k = 0; k < this.size; k++) {
      const at = this.#at(k);
      next[k * stride] = this.ring[at]!;
      if (stride === 3) {
        next[k * stride + 1] = this.#first(at);
        next[k * stride + 2] = this.#units(at);
      }
    }
    this.ring = next;
    this.slots = slots;
    this.stride = stride;
    this.head = 0;
  }
}

/** Logs kept at most by default (one per limit and subject: a key, a client address): about 70 MB when full (docs/limits.md). */
export const MAX_LOGS = 250_000;

/**
 * Sliding logs in this process: exact for one node, and the stand-in when Redis is down. At most
 * `maxLogs` logs are kept: past that the least recently used leaves (second chance, as in the
 * key cache), so a flood of new addresses costs bounded memory and pushes out idle subjects,
 * not the busy ones it would take to evade a limit. Idle logs also leave once a minute.
 */
export class MemoryLimiter implements Limiter {
  readonly mode = "memory";
  readonly #logs = new Map<string, Log>();
  readonly #max: number;
  /** A decision's logs and counts, reused: a decision allocates nothing but its outcome. */
  readonly #decided: Log[] = [];
  readonly #used: number[] = [];
  readonly #now: () => number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(options: { now?: () => number; sweepMs?: number; maxLogs?: number } = {}) {
    this.#now = options.now ?? Date.now;
    this.#max = options.maxLogs ?? MAX_LOGS;
    this.#sweeper = setInterval(() => this.#sweep(), options.sweepMs ?? 60_000);
    this.#sweeper.unref();
  }

  consume(limits: readonly Limit[], cost: number): Promise<Outcome> {
    return Promise.resolve(this.consumeNow(limits, cost));
  }

  /** The same decision, synchronously. */
  consumeNow(limits: readonly Limit[], cost: number): Outcome {
    return this.#decide(limits, cost, true);
  }

  peek(limits: readonly Limit[], cost: number): Promise<Outcome> {
    return Promise.resolve(this.#decide(limits, cost, false));
  }

  peekNow(limits: readonly Limit[], cost: number): Outcome {
    return this.#decide(limits, cost, false);
  }

  #decide(limits: readonly Limit[], cost: number, count: boolean): Outcome {
    const now = this.#now();
    const logs = this.#decided;
    const used = this.#used;
    let admitted = true;
    for (let i = 0; i < limits.length; i++) {
      const log = this.#log(limits[i]!, now);
      const u = log.used(now);
      logs[i] = log;
      used[i] = u;
      if (u + cost > log.limit) admitted = false;
    }
    const states: LimitState[] = [];
    for (let i = 0; i < limits.length; i++) {
      const log = logs[i]!;
      const retryAfterMs = used[i]! + cost > log.limit ? log.retryAfter(now, cost) : 0;
      if (admitted && count && cost > 0) log.add(now, cost);
      states.push(stateOf(limits[i]!, admitted, cost, used[i]!, log.resetMs(now), retryAfterMs));
    }
    return { admitted, states };
  }

  #log(limit: Limit, now: number): Log {
    let log = this.#logs.get(limit.bucket);
    if (!log) {
      if (this.#logs.size >= this.#max) this.#evict();
      log = new Log(limit);
      this.#logs.set(limit.bucket, log);
    } else {
      // A new log is at the back already: only a later use earns the second chance.
      log.recent = true;
      if (log.limit !== limit.limit || log.windowMs !== limit.windowMs) log.reshape(limit);
    }
    log.prune(now);
    return log;
  }

  /** The log used least recently, near enough, leaves: each one used since its last look gets a second chance at the back. */
  #evict(): void {
    for (const [bucket, log] of this.#logs) {
      this.#logs.delete(bucket);
      if (log.recent) {
        log.recent = false;
        this.#logs.set(bucket, log);
        continue;
      }
      return;
    }
  }

  /** Logs held now. */
  get size(): number {
    return this.#logs.size;
  }

  /** Drops the logs of idle subjects: every admission left the window. */
  #sweep(): void {
    const now = this.#now();
    for (const [key, log] of this.#logs) if (!(log.newest() > now - log.windowMs)) this.#logs.delete(key);
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
  }
}
