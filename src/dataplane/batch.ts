import { KeygateError } from "../core/errors.ts";
import { type BatchResponse, UpstreamError } from "../upstream/bitrix24/index.ts";
import type { Command, Entity } from "./entities.ts";
import { queryFromBody } from "./query.ts";
import { type Portal, deniedAsMissing, fieldsOf, listed, notFound, unexpected } from "./service.ts";

/**
 * POST /v1/batch on Bitrix24's own `batch` method (docs/dataplane.md, "Batch"): every call is
 * planned as one or two Bitrix24 commands up front (planning is where its content is checked),
 * and the commands of all the calls keygate admits go to the portal together — one request for
 * up to 50 commands. What a single route does with a second request (the get that shows a
 * record after users' writes, the get that tells a missing task or user from a forbidden one)
 * is a second command in the same request, reading the first one's answer through
 * `$result[command]` where it needs to. A list answers one Bitrix24 page.
 */

/** Bitrix24 runs at most 50 commands in one batch request. */
export const MAX_COMMANDS = 50;
/** A call needs at most two commands, so a batch of 50 calls takes at most this many requests. */
export const MAX_REQUESTS = 2;

export type BatchAction = "list" | "search" | "get" | "create" | "update" | "delete" | "fields";

/** A command's answer in a batch: its result (with a list's total and next), or its error. */
interface Answer {
  result?: unknown;
  error?: UpstreamError;
  total?: number;
  next?: number;
}

/** A call's outcome: its value (a list's items, with meta), or why it failed. */
export type Outcome = { value: unknown; meta?: Record<string, unknown> } | { error: KeygateError | UpstreamError };

export interface Plan {
  /** The call's commands by batch id, in the order they run. */
  commands: [string, Command][];
  /** The call's outcome from its commands' answers (throws what the call failed with). */
  read(answers: Map<string, Answer>): Outcome;
}

/**
 * A call's commands, named `<id>` and `<id>x`. Throws the call's content problems as KeygateErrors
 * whose param is relative to the call: `id` for entityId, anything else under params.
 */
export function plan(entity: Entity, action: BatchAction, entityId: string | undefined, params: Record<string, unknown>, id: string): Plan {
  const answered = (answers: Map<string, Answer>, command: string): Answer => {
    const a = answers.get(command);
    if (a?.error) throw a.error;
    if (a === undefined || !("result" in a)) throw new UpstreamError("BITRIX_ERROR", { method: "batch", error: "UNEXPECTED_ANSWER", error_description: "no answer for a command" });
    return a;
  };
  const one = (command: Command, read: (a: Answer) => Outcome): Plan => ({ commands: [[id, command]], read: (answers) => read(answered(answers, id)) });
  /**
   * A write, and where needed the record's get after it, in the same request: the get shows the
   * record (refetchAfterWrite) and tells a missing record from a forbidden one (missingLooksForbidden).
   */
  const write = (command: Command, get: Command | undefined, read: (a: Answer, got: () => Record<string, unknown> | undefined) => Outcome): Plan => {
    const check = `${id}x`;
    return {
      commands: get === undefined ? [[id, command]] : [[id, command], [check, get]],
      read(answers) {
        const got = () => entity.readItem(answered(answers, check).result);
        let a: Answer;
        try {
          a = answered(answers, id);
        } catch (e) {
          if (get !== undefined && deniedAsMissing(entity, e) && missing(answers.get(check))) throw notFound(entity, entityId!);
          throw e;
        }
        return read(a, got);
      },
    };
  };
  const missing = (a: Answer | undefined) => a !== undefined && (a.error ? a.error.code === "ENTITY_NOT_FOUND" : "result" in a && entity.readItem(a.result) === undefined);

  switch (action) {
    case "list":
    case "search": {
      const query = queryFromBody(params);
      return one(entity.list(query, query.offset), (a) => {
        const page = entity.readPage(a.result, a.total, a.next);
        const { items, meta } = listed(entity, query, page.items, page.total);
        // One Bitrix24 page: where it ends before the list does, the client asks again from nextOffset.
        return { value: items, meta: meta.hasMore ? { ...meta, nextOffset: query.offset + items.length } : meta };
      });
    }
    case "get":
      return one(entity.get(entityId!), (a) => ({ value: entity.readItem(a.result) ?? raise(notFound(entity, entityId!)) }));
    case "fields":
      return one(entity.fields(), (a) => ({ value: entity.readFields(a.result) }));
    case "create": {
      const command = entity.create(fieldsOf(params));
      const get = entity.refetchAfterWrite ? entity.get({ batchResult: id }) : undefined;
      return write(command, get, (a, got) => ({ value: (get ? got() : entity.readItem(a.result)) ?? unexpected(command) }));
    }
    case "update": {
      const command = entity.update(entityId!, fieldsOf(params));
      const get = entity.refetchAfterWrite || entity.missingLooksForbidden ? entity.get(entityId!) : undefined;
      return write(command, get, (a, got) => ({ value: (entity.refetchAfterWrite ? got() : (entity.readItem(a.result) ?? (get && got()))) ?? unexpected(command) }));
    }
    case "delete": {
      if (!entity.remove) throw new KeygateError("VALIDATION_ERROR", { message: `${entity.name} cannot be deleted`, param: "action" });
      const get = entity.missingLooksForbidden ? entity.get(entityId!) : undefined;
      return write(entity.remove(entityId!), get, () => ({ value: { id: Number(entityId), deleted: true } }));
    }
  }
}

function raise(e: Error): never {
  throw e;
}

/**
 * Where a value cannot travel in a Bitrix24 batch as it is, as a path under the call's params:
 * commands are query strings, which have no null and no empty list (PHP drops both), and in which
 * Bitrix24 reads any `$result[…]` as a reference to another command's answer.
 */
export function notBatchable(value: unknown, path = ""): string | undefined {
  if (value === null) return path;
  if (typeof value === "string") return value.includes("$result[") ? path : undefined;
  if (Array.isArray(value)) {
    if (value.length === 0) return path;
    for (const [i, v] of value.entries()) {
      const at = notBatchable(v, `${path}[${i}]`);
      if (at !== undefined) return at;
    }
    return undefined;
  }
  if (typeof value === "object") {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const at = notBatchable(k, path ? `${path}.${k}` : k) ?? notBatchable(v, path ? `${path}.${k}` : k);
      if (at !== undefined) return at;
    }
  }
  return undefined;
}

/**
 * Runs the planned calls as Bitrix24 batch requests (halt 0: a failing command stops nothing),
 * all of a call's commands in one request so its references resolve: one request for up to 50
 * commands, at most MAX_REQUESTS in all. A request that fails as a whole (the portal unreachable,
 * its limit spent) fails each of its calls with that error; any other failure (the portal's
 * budget, an unlinked portal) is the whole batch's.
 */
export async function runBatch(b24: Portal, calls: Map<string, Plan>): Promise<Map<string, Outcome>> {
  const chunks: [string, Plan][][] = [];
  let size = MAX_COMMANDS;
  for (const call of calls) {
    const n = call[1].commands.length;
    if (size + n > MAX_COMMANDS) {
      chunks.push([]);
      size = 0;
    }
    chunks.at(-1)!.push(call);
    size += n;
  }
  const outcomes = new Map<string, Outcome>();
  for (const chunk of chunks) {
    let response: BatchResponse;
    try {
      response = await b24.batch(Object.fromEntries(chunk.flatMap(([, p]) => p.commands)), false);
    } catch (e) {
      if (!(e instanceof UpstreamError)) throw e;
      for (const [id] of chunk) outcomes.set(id, { error: e });
      continue;
    }
    const answers = new Map<string, Answer>();
    for (const [, p] of chunk) {
      for (const [command] of p.commands) {
        const a: Answer = {};
        if (Object.hasOwn(response.errors, command)) a.error = response.errors[command];
        else if (Object.hasOwn(response.result, command)) a.result = response.result[command];
        if (typeof response.result_total[command] === "number") a.total = response.result_total[command];
        if (typeof response.result_next[command] === "number") a.next = response.result_next[command];
        answers.set(command, a);
      }
    }
    for (const [id, p] of chunk) {
      try {
        outcomes.set(id, p.read(answers));
      } catch (e) {
        if (!(e instanceof KeygateError) && !(e instanceof UpstreamError)) throw e;
        outcomes.set(id, { error: e });
      }
    }
  }
  return outcomes;
}
