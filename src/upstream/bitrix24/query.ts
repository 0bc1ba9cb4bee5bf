/**
 * Bitrix24's form encoding: PHP's nested query strings (fields[TITLE]=x&filter[>opportunity]=5
 * &select[0]=id). Bitrix24 takes method parameters this way in a GET query, in an
 * application/x-www-form-urlencoded body, and inside `batch` commands ("crm.item.get?entityTypeId=2&id=5").
 * JSON bodies carry the same structure as JSON.
 */
import { MAX_JSON_DEPTH } from "../../core/json.ts";

/** Keys that would reach an object's prototype: dropped when parsing. */
const UNSAFE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/**
 * The parameters as a query string the way PHP's http_build_query writes them: nested objects
 * and arrays as key[sub]=…, arrays indexed (key[0]=…), true/false as 1/0, null and undefined
 * left out. Keys and values are percent-encoded.
 */
export function encodeQuery(params: Record<string, unknown>): string {
  const parts: string[] = [];
  const walk = (prefix: string, value: unknown): void => {
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) {
      value.forEach((v, i) => walk(`${prefix}[${i}]`, v));
      return;
    }
    if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) walk(`${prefix}[${k}]`, v);
      return;
    }
    const text = typeof value === "boolean" ? (value ? "1" : "0") : String(value);
    parts.push(`${encodeURIComponent(prefix)}=${encodeURIComponent(text)}`);
  };
  for (const [k, v] of Object.entries(params)) walk(k, v);
  return parts.join("&");
}

/**
 * A query string parsed the way PHP parses one: a[b][c]=v nests, a[]=v appends, repeated plain
 * keys keep the last value, + is a space. Values are strings. Objects whose keys are 0, 1, 2, …
 * in order become arrays (what PHP's json_encode would show).
 */
export function parseQuery(query: string): Record<string, unknown> {
  const root: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (query.startsWith("?")) query = query.slice(1);
  for (const part of query.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const rawKey = eq < 0 ? part : part.slice(0, eq);
    const rawValue = eq < 0 ? "" : part.slice(eq + 1);
    const key = decode(rawKey);
    const value = decode(rawValue);
    const path = keyPath(key);
    // PHP drops a variable nested deeper than max_input_nesting_level; so does this.
    if (path === undefined || path.length > MAX_JSON_DEPTH || path.some((p) => p !== "" && UNSAFE_KEYS.has(p))) continue;
    assign(root, path, value);
  }
  return listify(root) as Record<string, unknown>;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "));
  } catch {
    return text;
  }
}

/** "a[b][]" → ["a", "b", ""]; undefined for a key with no name. */
function keyPath(key: string): string[] | undefined {
  const open = key.indexOf("[");
  if (open <= 0) return key === "" ? undefined : [key];
  const path = [key.slice(0, open)];
  const re = /\[([^\]]*)\]/y;
  re.lastIndex = open;
  let match: RegExpExecArray | null;
  while ((match = re.exec(key)) !== null) path.push(match[1]!);
  // PHP ignores what follows the last closing bracket; so does this.
  return path;
}

function assign(target: Record<string, unknown>, path: string[], value: string): void {
  let node = target;
  for (let i = 0; i < path.length; i++) {
    let segment = path[i]!;
    if (segment === "") segment = String(nextIndex(node));
    if (i === path.length - 1) {
      node[segment] = value;
      return;
    }
    const child = node[segment];
    if (child === null || typeof child !== "object") node[segment] = Object.create(null) as Record<string, unknown>;
    node = node[segment] as Record<string, unknown>;
  }
}

function nextIndex(node: Record<string, unknown>): number {
  let max = -1;
  for (const k of Object.keys(node)) if (/^\d+$/.test(k)) max = Math.max(max, Number(k));
  return max + 1;
}

/** Plain objects again (no null prototype), and 0..n-1 keyed objects as arrays. */
function listify(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > 0 && entries.every(([k], i) => k === String(i))) return entries.map(([, v]) => listify(v));
  return Object.fromEntries(entries.map(([k, v]) => [k, listify(v)]));
}
