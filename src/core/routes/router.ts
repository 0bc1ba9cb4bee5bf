/**
 * Method + path matching for route tables. Segments are matched static first, then
 * `:param`, then a trailing `*` (the rest of the path, possibly empty). HEAD falls back to
 * GET. Paths are compared as sent (no decoding): a path that matches no route is denied,
 * so an encoded spelling can never reach a route it would not match.
 */
interface Node<T> {
  statics: Map<string, Node<T>>;
  param: { name: string; node: Node<T> } | undefined;
  wildcard: Map<string, T> | undefined;
  values: Map<string, T>;
}

export interface RouteMatch<T> {
  value: T;
  params: Record<string, string>;
}

function node<T>(): Node<T> {
  return { statics: new Map(), param: undefined, wildcard: undefined, values: new Map() };
}

export function splitPath(path: string): string[] {
  let end = path.length;
  const q = path.indexOf("?");
  if (q >= 0) end = q;
  const h = path.indexOf("#");
  if (h >= 0 && h < end) end = h;
  return path.slice(0, end).split("/").filter((s) => s !== "");
}

export class Router<T> {
  readonly #root: Node<T> = node();
  readonly #methods = new Set<string>();

  /** Adds a route; returns a problem description instead of adding a duplicate or a bad pattern. */
  add(method: string, pattern: string, value: T): string | undefined {
    if (!pattern.startsWith("/")) return `path "${pattern}" must start with "/"`;
    const segments = splitPath(pattern);
    this.#methods.add(method);
    let current = this.#root;
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      if (segment === "*") {
        if (i !== segments.length - 1) return `path "${pattern}": "*" may only be the last segment`;
        current.wildcard ??= new Map();
        if (current.wildcard.has(method)) return `${method} ${pattern} is defined twice`;
        current.wildcard.set(method, value);
        return undefined;
      }
      if (segment.startsWith(":")) {
        const name = segment.slice(1);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return `path "${pattern}": bad parameter name "${segment}"`;
        if (current.param && current.param.name !== name) return `path "${pattern}": parameter :${name} conflicts with :${current.param.name} at the same place`;
        current.param ??= { name, node: node() };
        current = current.param.node;
      } else {
        let next = current.statics.get(segment);
        if (!next) current.statics.set(segment, (next = node()));
        current = next;
      }
    }
    if (current.values.has(method)) return `${method} ${pattern} is defined twice`;
    current.values.set(method, value);
    return undefined;
  }

  /** The methods some route has for this path, HEAD wherever GET is (a 405's Allow); a look at every method, kept off the matching path. */
  methodsAt(path: string): string[] {
    const methods = [...this.#methods].filter((m) => this.match(m, path) !== undefined);
    if (methods.includes("GET") && !methods.includes("HEAD")) methods.push("HEAD");
    return methods;
  }

  match(method: string, path: string): RouteMatch<T> | undefined {
    let end = path.length;
    const q = path.indexOf("?");
    if (q >= 0) end = q;
    const h = path.indexOf("#");
    if (h >= 0 && h < end) end = h;
    const captured: string[] = [];
    const value = find(this.#root, path, 0, end, method, captured) ?? (method === "HEAD" ? find(this.#root, path, 0, end, "GET", captured) : undefined);
    if (value === undefined) return undefined;
    const params: Record<string, string> = {};
    for (let i = 0; i < captured.length; i += 2) params[captured[i]!] = captured[i + 1]!;
    return { value, params };
  }
}

/** Walks the path segment by segment without splitting it; `captured` holds name, value pairs. */
function find<T>(n: Node<T>, path: string, from: number, end: number, method: string, captured: string[]): T | undefined {
  let i = from;
  while (i < end && path.charCodeAt(i) === 47 /* "/" */) i++;
  if (i >= end) {
    const v = n.values.get(method);
    if (v !== undefined) return v;
    const rest = n.wildcard?.get(method);
    if (rest !== undefined) captured.push("*", "");
    return rest;
  }
  let next = path.indexOf("/", i);
  if (next < 0 || next > end) next = end;
  const segment = path.slice(i, next);
  const s = n.statics.get(segment);
  if (s) {
    const v = find(s, path, next, end, method, captured);
    if (v !== undefined) return v;
  }
  if (n.param) {
    captured.push(n.param.name, segment);
    const v = find(n.param.node, path, next, end, method, captured);
    if (v !== undefined) return v;
    captured.length -= 2;
  }
  const w = n.wildcard?.get(method);
  if (w !== undefined) {
    let last = end;
    while (last > i && path.charCodeAt(last - 1) === 47) last--;
    captured.push("*", path.slice(i, last));
    return w;
  }
  return undefined;
}
