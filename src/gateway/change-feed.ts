import type { Store, StoredChange } from "../store/store.ts";
import type { Change } from "./invalidation.ts";

export interface ChangeFeedOptions {
  /** How often the store is read (ms, default 1000): the bound on how stale a node can be when Redis cannot tell it. */
  pollMs?: number;
  /** How long each read took (seconds), for /metrics. */
  onRead?: (seconds: number) => void;
  /** A read failed after one that did not (the store went away); the next read is a poll later. */
  onError?: (error: Error) => void;
  now?: () => number;
}

/** Rows a read takes at most; a full batch is followed by another read at once. */
const BATCH = 1_000;
/** How long a missing sequence number is watched for (a PostgreSQL transaction still committing) before it counts as rolled back. */
const GAP_WATCH_MS = 10_000;
/** Missing numbers watched at most: past this the oldest are given up (only a storm of rolled-back changes gets here). */
const MAX_GAPS = 10_000;
/** Numbers below the newest at start that are watched as gaps: changes that were committing as the node started. */
const START_WINDOW = 100;
/** How long rows stay in the store; every node prunes older ones once a minute. */
export const CHANGE_RETENTION_MS = 3_600_000;
const PRUNE_EVERY_MS = 60_000;

const toChange = (c: StoredChange): Change => {
  if (c.kind === "key") return { kind: "key", id: c.entityId, digest: c.digest ?? "", ...(c.version !== null && { version: c.version }) };
  if (c.kind === "portal") return { kind: "portal", id: c.entityId };
  return { kind: "data" };
};

/**
 * The store's change feed (migration 007) as a node reads it: every second or so, the rows after
 * the newest it has seen, handed on as the changes Redis would have told it of. Redis makes a
 * change reach the other nodes within a round trip; this makes it reach them at all — Redis down,
 * a message lost, a subscription that went deaf without a sign — within about one poll. It reads
 * whether Redis is up or not: a dropped subscription cannot be told from a quiet one, and a read
 * of an indexed range a second costs the store next to nothing.
 *
 * PostgreSQL hands out sequence numbers before commit: a number may appear after a higher one,
 * or never (rolled back). A number skipped is watched for ten seconds and read when it appears.
 * A node that could not read for longer than half the rows are kept may have missed some that
 * were pruned: it then drops everything it holds ({kind: "all"}).
 */
export class ChangeFeed {
  readonly #store: Store;
  readonly #pollMs: number;
  readonly #onError: (error: Error) => void;
  readonly #onRead: (seconds: number) => void;
  readonly #now: () => number;
  /** Every number up to this was seen or is watched in #gaps. */
  #highest = 0;
  /** Missing numbers → when they were first missed. */
  readonly #gaps = new Map<number, number>();
  #lastRead = 0;
  #failing = false;
  #begun = false;
  #lastPrune = 0;
  #timer: NodeJS.Timeout | undefined;
  #reading: Promise<void> | undefined;
  #apply: (changes: Change[]) => void = () => {};

  constructor(store: Store, options: ChangeFeedOptions = {}) {
    this.#store = store;
    this.#pollMs = options.pollMs ?? 1_000;
    this.#onError = options.onError ?? (() => {});
    this.#onRead = options.onRead ?? (() => {});
    this.#now = options.now ?? Date.now;
  }

  /**
   * Starts reading after the newest change there is now; `apply` gets every later one (and the
   * ones still committing now). A store that does not answer yet is reported, and read from
   * where it stands once it does.
   */
  async start(apply: (changes: Change[]) => void): Promise<void> {
    this.#apply = apply;
    this.#timer = setInterval(() => void this.read(), this.#pollMs);
    this.#timer.unref();
    await this.read();
  }

  /** Where this node starts: after the newest change, watching the last few numbers that may still be committing. */
  async #begin(): Promise<void> {
    const newest = await this.#store.lastChange();
    const from = Math.max(0, newest - START_WINDOW);
    const present = new Set((await this.#store.changesSince(from, START_WINDOW)).map((c) => c.seq));
    const now = this.#now();
    for (let seq = from + 1; seq <= newest; seq++) if (!present.has(seq)) this.#gaps.set(seq, now);
    this.#highest = newest;
    this.#lastRead = now;
    this.#begun = true;
  }

  /** Reads what changed since the last read (a read under way is joined, not doubled). */
  read(): Promise<void> {
    const started = performance.now();
    this.#reading ??= this.#read().then(
      () => {
        this.#onRead((performance.now() - started) / 1000);
        this.#reading = undefined;
        this.#failing = false;
      },
      (e: unknown) => {
        this.#reading = undefined;
        if (!this.#failing) this.#onError(e instanceof Error ? e : new Error(String(e)));
        this.#failing = true;
      },
    );
    return this.#reading;
  }

  async #read(): Promise<void> {
    if (!this.#begun) return this.#begin();
    const store = this.#store;
    const now = this.#now();
    const changes: Change[] = [];
    if (now - this.#lastRead > CHANGE_RETENTION_MS / 2) changes.push({ kind: "all" });
    if (this.#gaps.size > 0) {
      for (const [seq, since] of this.#gaps) if (now - since > GAP_WATCH_MS) this.#gaps.delete(seq);
      const watched = [...this.#gaps.keys()];
      for (const c of await store.changesSince(0, watched.length, watched)) {
        this.#gaps.delete(c.seq);
        changes.push(toChange(c));
      }
    }
    for (;;) {
      const rows = await store.changesSince(this.#highest, BATCH);
      for (const c of rows) {
        for (let seq = Math.max(this.#highest + 1, c.seq - MAX_GAPS); seq < c.seq; seq++) this.#watch(seq, now);
        this.#highest = c.seq;
        changes.push(toChange(c));
      }
      if (rows.length < BATCH) break;
    }
    this.#lastRead = now;
    if (changes.length > 0) this.#apply(changes);
    if (now - this.#lastPrune >= PRUNE_EVERY_MS) {
      this.#lastPrune = now;
      await store.pruneChanges(CHANGE_RETENTION_MS);
    }
  }

  #watch(seq: number, now: number): void {
    if (this.#gaps.size >= MAX_GAPS) this.#gaps.delete(this.#gaps.keys().next().value!);
    this.#gaps.set(seq, now);
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#reading;
  }
}
