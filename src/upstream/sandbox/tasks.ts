/**
 * tasks.task.list/get/add/update/delete/getFields. Fields go in as UPPER_CASE (TITLE,
 * RESPONSIBLE_ID, DEADLINE …) and come back lowerCamel with numbers as strings
 * ({id: "12", responsibleId: "1", status: "2"}), wrapped in `task` (one) or `tasks` (a list), as
 * Bitrix24 answers. Statuses: 2 pending, 3 in progress, 4 awaiting control, 5 completed,
 * 6 deferred; priorities 0 low, 1 medium, 2 high.
 *
 * Refusals follow the docs: a missing parameter "100" (Could not find value for parameter {…}),
 * bad task data ERROR_CORE with texts ending in <br> (Task title not specified, Assignee not
 * specified, Invalid status, the assignee not found), tasks.task.get of an unknown task answers
 * an empty result ([]), update of one "0" (Action on the task is not allowed), delete of one
 * "1048582" (No access to delete the task): Bitrix24 does not tell a missing task from a
 * forbidden one.
 */
import { ENTITY, type MethodContext, type MethodDef } from "./context.ts";
import { BitrixFault, missingParameter } from "./fault.ts";
import { type FieldKind, type ListField, type ListSchema, applyFilter, applyOrder, paginate } from "./lists.ts";
import { userExists } from "./users.ts";
import { isRecord, isoTime, lowerCamel, toInt, toList, toText, toTime } from "./values.ts";
import type { SandboxItem } from "../../store/store.ts";

type TaskType = "integer" | "string" | "enum" | "datetime" | "array";

interface TaskField {
  /** UPPER_CASE, as written in fields, filter, select and order. */
  name: string;
  type: TaskType;
  title: string | null;
  readOnly?: boolean;
  required?: boolean;
  values?: Record<string, string>;
  default?: unknown;
  primary?: boolean;
}

const STATUSES = { "2": "Pending", "3": "In Progress", "4": "Awaiting Control", "5": "Completed", "6": "Deferred" };
const PRIORITIES = { "2": "High", "1": "Medium", "0": "Low" };

const FIELDS: TaskField[] = [
  { name: "ID", type: "integer", title: "ID", primary: true, readOnly: true },
  { name: "PARENT_ID", type: "integer", title: "Base task ID", default: 0 },
  { name: "TITLE", type: "string", title: "Title", required: true },
  { name: "DESCRIPTION", type: "string", title: "Description" },
  { name: "PRIORITY", type: "enum", title: "Priority", values: PRIORITIES, default: 1 },
  { name: "STATUS", type: "enum", title: "Status", values: STATUSES, default: 2 },
  { name: "GROUP_ID", type: "integer", title: "Project", default: 0 },
  { name: "CREATED_BY", type: "integer", title: "Creator", required: true },
  { name: "CREATED_DATE", type: "datetime", title: null, readOnly: true },
  { name: "RESPONSIBLE_ID", type: "integer", title: "Assignee", required: true },
  { name: "ACCOMPLICES", type: "array", title: null },
  { name: "AUDITORS", type: "array", title: null },
  { name: "CHANGED_BY", type: "integer", title: "Changed by", readOnly: true },
  { name: "CHANGED_DATE", type: "datetime", title: "Change date", readOnly: true },
  { name: "STATUS_CHANGED_DATE", type: "datetime", title: "Status change date", readOnly: true },
  { name: "CLOSED_BY", type: "integer", title: "Closed by", readOnly: true, default: null },
  { name: "CLOSED_DATE", type: "datetime", title: "Closing date", readOnly: true, default: null },
  { name: "DEADLINE", type: "datetime", title: "Deadline", default: null },
  { name: "START_DATE_PLAN", type: "datetime", title: "Planned start", default: null },
  { name: "END_DATE_PLAN", type: "datetime", title: "Planned completion", default: null },
  { name: "TIME_ESTIMATE", type: "integer", title: "Estimated time" },
];
const BY_NAME = new Map(FIELDS.map((x) => [x.name, x]));

/** A field by its UPPER_CASE or lowerCamel name (REAL_STATUS is STATUS). */
function fieldNamed(key: string): TaskField | undefined {
  const upper = /^[A-Z0-9_]+$/.test(key) ? key : key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
  return BY_NAME.get(upper === "REAL_STATUS" ? "STATUS" : upper);
}

const core = (text: string) => new BitrixFault(400, "ERROR_CORE", `${text}<br>`);

function taskIdOf(params: Record<string, unknown>): number {
  if (params["taskId"] === undefined || params["taskId"] === "") throw missingParameter("taskId");
  const id = toInt(params["taskId"]);
  if (id === undefined) throw new BitrixFault(400, "0", "wrong task id");
  return id;
}

/** One value as stored (numbers as strings, lists of strings, ISO times), or a refusal. */
function normalizeValue(field: TaskField, value: unknown): unknown {
  switch (field.type) {
    case "integer": {
      if (value === null || value === "") return field.name === "RESPONSIBLE_ID" ? undefined : "0";
      const n = toInt(value);
      if (n === undefined) throw core(`Invalid value for field ${field.name}`);
      return String(n);
    }
    case "enum": {
      const v = toText(value);
      if (v === undefined || !Object.hasOwn(field.values!, v)) throw field.name === "STATUS" ? core("Invalid status") : core(`Invalid value for field ${field.name}`);
      return v;
    }
    case "datetime": {
      if (value === null || value === "") return null;
      const t = toTime(value);
      if (t === undefined) throw core(`Invalid value for field ${field.name}`);
      return isoTime(t);
    }
    case "array":
      return toList(value)
        .map((v) => toInt(v))
        .filter((v): v is number => v !== undefined)
        .map(String);
    case "string":
      return toText(value) ?? "";
  }
}

/** The writable UPPER_CASE fields of `fields`, stored lowerCamel. */
function normalizeFields(input: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    const field = BY_NAME.get(key);
    if (field === undefined || field.readOnly || value === undefined) continue;
    out[lowerCamel(field.name)] = normalizeValue(field, value);
  }
  return out;
}

async function checkAssignee(ctx: MethodContext, responsibleId: unknown): Promise<void> {
  if (responsibleId === undefined || responsibleId === null || responsibleId === "" || responsibleId === "0") throw core("Assignee not specified");
  if (!(await userExists(ctx, Number(responsibleId)))) throw core('User specified in the "Assignee" field not found');
}

/** Status bookkeeping: when it changes, its date; completed (5) closes the task, anything else reopens it. */
function statusEffects(ctx: MethodContext, patch: Record<string, unknown>, previous: unknown): void {
  if (patch["status"] === undefined || patch["status"] === previous) return;
  patch["statusChangedDate"] = isoTime(ctx.now);
  if (patch["status"] === "5") {
    patch["closedBy"] = String(ctx.userId);
    patch["closedDate"] = isoTime(ctx.now);
  } else {
    patch["closedBy"] = null;
    patch["closedDate"] = null;
  }
}

/** The task as Bitrix24 answers it: lowerCamel, numbers as strings. */
export function presentTask(item: SandboxItem): Record<string, unknown> {
  const stored = item.fields;
  const out: Record<string, unknown> = {};
  for (const field of FIELDS) {
    const key = lowerCamel(field.name);
    if (field.name === "ID") out[key] = String(item.id);
    else if (field.name === "CREATED_DATE") out[key] = isoTime(item.createdAt);
    else if (field.name === "CHANGED_DATE") out[key] = isoTime(item.updatedAt);
    else if (stored[key] !== undefined) out[key] = stored[key];
    else if (field.type === "array") out[key] = [];
    else if (field.default !== undefined) out[key] = field.default === null ? null : String(field.default);
    else out[key] = field.type === "string" ? "" : null;
  }
  return out;
}

/** Adds a task as tasks.task.add does; the task as answered. */
export async function addTask(ctx: MethodContext, fields: Record<string, unknown>): Promise<Record<string, unknown>> {
  const stored = normalizeFields(fields);
  if (stored["title"] === undefined || String(stored["title"]).trim() === "") throw core("Task title not specified");
  await checkAssignee(ctx, stored["responsibleId"]);
  stored["createdBy"] = stored["createdBy"] ?? String(ctx.userId);
  stored["changedBy"] = String(ctx.userId);
  stored["status"] = stored["status"] ?? "2";
  stored["priority"] = stored["priority"] ?? "1";
  stored["statusChangedDate"] = isoTime(ctx.now);
  if (stored["status"] === "5") {
    stored["closedBy"] = String(ctx.userId);
    stored["closedDate"] = isoTime(ctx.now);
  }
  const item = await ctx.store.addSandboxItem(ctx.portalId, ENTITY.task, stored, ctx.now);
  return presentTask(item);
}

function fieldsOf(params: Record<string, unknown>): Record<string, unknown> {
  const fields = params["fields"];
  if (!isRecord(fields) || Object.keys(fields).length === 0) throw missingParameter("fields");
  return fields;
}

const KIND: Record<TaskType, FieldKind> = { integer: "number", enum: "number", datetime: "date", array: "number", string: "string" };

const schema: ListSchema = {
  field: (key) => {
    const def = fieldNamed(key);
    if (def === undefined) return undefined;
    const field: ListField = { name: lowerCamel(def.name), kind: KIND[def.type] };
    if (def.type === "array") field.multiple = true;
    return field;
  },
  // tasks.task.list leaves out conditions on fields it does not filter by.
  unknownFilterField: () => {},
  likeOnEquality: true,
};

/** The select parameter as answer keys (ID always); undefined: every field. */
function selected(select: unknown): Set<string> | undefined {
  if (select === undefined || select === null || select === "") return undefined;
  const names = toList(select).map(String);
  if (names.length === 0 || names.includes("*")) return undefined;
  const keys = new Set(["id"]);
  for (const name of names) {
    const def = fieldNamed(name);
    if (def !== undefined) keys.add(lowerCamel(def.name));
  }
  return keys;
}

const project = (task: Record<string, unknown>, keys: Set<string> | undefined) => (keys === undefined ? task : Object.fromEntries(Object.entries(task).filter(([k]) => keys.has(k))));

export const taskMethods: Record<string, MethodDef> = {
  "tasks.task.list": {
    scopes: ["task"],
    async run(ctx, params) {
      const tasks = (await ctx.store.listSandboxItems(ctx.portalId, ENTITY.task)).map(presentTask);
      const orderParam = isRecord(params["order"]) ? params["order"] : { ID: "desc" };
      const order: [ListField, "ASC" | "DESC"][] = [];
      for (const [key, dir] of Object.entries(orderParam)) {
        const field = schema.field(key);
        const direction = String(dir).toUpperCase();
        if (field === undefined || (direction !== "ASC" && direction !== "DESC")) throw new BitrixFault(400, "0", "Invalid sorting key (internal error)");
        order.push([field, direction]);
      }
      const { page, total, next } = paginate(applyOrder(applyFilter(tasks, params["filter"], schema), order), params["start"]);
      const keys = selected(params["select"]);
      return { result: { tasks: page.map((t) => project(t, keys)) }, total, ...(next === undefined ? {} : { next }) };
    },
  },
  "tasks.task.get": {
    scopes: ["task"],
    async run(ctx, params) {
      const id = taskIdOf(params);
      const select = params["select"];
      if (select !== undefined && !Array.isArray(select) && !isRecord(select)) {
        throw new BitrixFault(400, "100", "Invalid value {} to match with parameter {select}. Should be value of type array. (internal error)");
      }
      const item = await ctx.store.getSandboxItem(ctx.portalId, ENTITY.task, id);
      // Bitrix24 answers an empty result for a task that does not exist (or is not visible).
      if (item === undefined) return { result: [] };
      return { result: { task: project(presentTask(item), selected(select)) } };
    },
  },
  "tasks.task.add": {
    scopes: ["task"],
    async run(ctx, params) {
      return { result: { task: await addTask(ctx, fieldsOf(params)) } };
    },
  },
  "tasks.task.update": {
    scopes: ["task"],
    async run(ctx, params) {
      const id = taskIdOf(params);
      const input = fieldsOf(params);
      const current = await ctx.store.getSandboxItem(ctx.portalId, ENTITY.task, id);
      if (current === undefined) throw new BitrixFault(400, "0", "Action on the task is not allowed (internal error)");
      const patch = normalizeFields(input);
      if (patch["title"] !== undefined && String(patch["title"]).trim() === "") throw core("Task title not specified");
      if ("responsibleId" in patch) await checkAssignee(ctx, patch["responsibleId"]);
      statusEffects(ctx, patch, current.fields["status"]);
      patch["changedBy"] = String(ctx.userId);
      const item = await ctx.store.updateSandboxItem(ctx.portalId, ENTITY.task, id, patch, ctx.now);
      if (item === undefined) throw new BitrixFault(400, "0", "Action on the task is not allowed (internal error)");
      return { result: { task: presentTask(item) } };
    },
  },
  "tasks.task.delete": {
    scopes: ["task"],
    async run(ctx, params) {
      const id = taskIdOf(params);
      if (!(await ctx.store.deleteSandboxItem(ctx.portalId, ENTITY.task, id))) throw new BitrixFault(400, "1048582", "No access to delete the task");
      return { result: { task: true } };
    },
  },
  "tasks.task.getfields": {
    scopes: ["task"],
    async run() {
      const fields: Record<string, unknown> = {};
      for (const x of FIELDS) {
        const d: Record<string, unknown> = { title: x.title, type: x.type };
        if (x.primary) d["primary"] = true;
        if (x.required) d["required"] = true;
        if (x.values) d["values"] = x.values;
        if (x.default !== undefined) d["default"] = x.default;
        fields[x.name] = d;
      }
      return { result: { fields } };
    },
  },
};
