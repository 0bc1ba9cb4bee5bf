/** What a sandbox method gets and gives. */
import type { Store } from "../../store/store.ts";

export interface MethodContext {
  store: Store;
  portalId: string;
  /** The webhook's user: the author of what it creates, the default assignee. */
  userId: number;
  /** The time of the request (epoch ms). */
  now: number;
  /** The webhook's scopes. */
  scopes: ReadonlySet<string>;
}

/** A method's answer: result, and for list methods total and next. */
export interface MethodResult {
  result: unknown;
  total?: number;
  next?: number;
}

export interface MethodDef {
  /** The webhook needs one of these scopes (empty: none). */
  scopes: readonly string[];
  run(ctx: MethodContext, params: Record<string, unknown>): Promise<MethodResult>;
}

/** The sandbox's entity types in the store (SandboxItem.entityType). */
export const ENTITY = {
  crm: (entityTypeId: number) => `crm:${entityTypeId}`,
  task: "task",
  user: "user",
  notification: "im.notify",
  message: "im.message",
  post: "log.blogpost",
  placement: "placement",
  bot: "imbot",
  botMessage: "imbot.message",
} as const;
