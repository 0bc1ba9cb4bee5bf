/**
 * The thin dialect: what a store module that writes its queries once (src/store/tickets.ts) needs
 * of either store. Queries use `?` placeholders (PostgreSQL's store numbers them $1, $2, …) and
 * only SQL both dialects read the same way; rows come back as both drivers hand them over
 * (src/store/rows.ts): numbers for integer columns, JSON as text.
 */
import type { Row, SqlValue } from "./rows.ts";

export interface SqlStatement {
  sql: string;
  params: SqlValue[];
  /** The statement must change exactly this many rows, or the whole batch is rolled back. */
  mustChange?: number;
}

export interface Sql {
  all(sql: string, params: SqlValue[]): Promise<Row[]>;
  /**
   * Runs the statements in order in one transaction. False, with nothing written, when a
   * statement with mustChange changed another number of rows (someone else changed the row first).
   */
  atomically(statements: SqlStatement[]): Promise<boolean>;
}

/** `?` → `$1`, `$2`, … (the queries hold no `?` inside string literals). */
export function numberedPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** Thrown inside a transaction to roll it back when a guarded statement changed the wrong number of rows. */
export class RolledBack extends Error {}
