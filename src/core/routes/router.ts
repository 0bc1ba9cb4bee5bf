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

  /** Adds a route; returns a problem description instead of adding a duplicate or a bad pattern. */
  add(method: string, pattern: string, value: T): string | undefined {
    if (!pattern.startsWith("/")) return `path "${pattern}" must start with "/"`;
    const segments = splitPath(pattern);
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

  match(method: string, path: string): RouteMatch<T> | undefined {
    const segments = splitPath(path);
    const captured: [string, string][] = [];
    const value = this.#find(this.#root, segments, 0, method, captured) ?? (method === "HEAD" ? this.#find(this.#root, segments, 0, "GET", captured) : undefined);
    if (value === undefined) return undefined;
    const params: Record<string, string> = {};
    for (const [name, v] of captured) params[name] = v;
    return { value, params };
  }

  #find(n: Node<T>, segments: string[], i: number, method: string, captured: [string, string][]): T | undefined {
    if (i === segments.length) {
      const v = n.values.get(method);
      if (v !== undefined) return v;
      const rest = n.wildcard?.get(method);
      if (rest !== undefined) captured.push(["*", ""]);
      return rest;
    }
    const segment = segments[i]!;
    const s = n.statics.get(segment);
    if (s) {
      const v = this.#find(s, segments, i + 1, method, captured);
      if (v !== undefined) return v;
    }
    if (n.param) {
      captured.push([n.param.name, segment]);
      const v = this.#find(n.param.node, segments, i + 1, method, captured);
      if (v !== undefined) return v;
      captured.pop();
    }
    const w = n.wildcard?.get(method);
    if (w !== undefined) {
      captured.push(["*", segments.slice(i).join("/")]);
      return w;
    }
    return undefined;
  }
}
