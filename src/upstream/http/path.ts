/**
 * Whether a request target is safe to judge and forward as it is. keygate matches routes on the
 * path as sent, without decoding it (src/core/routes/router.ts), and forwards that same path; an
 * upstream may decode or normalise it before routing. A path whose meaning changes on the way
 * could reach, upstream, a route other than the one keygate verified:
 *
 *   GET /api/v1/kb/../settings/x          matches kb/* here, is settings/x after normalisation
 *   DELETE …/kb/articles/a%2F..%2F..      one :id segment here, several after decoding
 *
 * So a forwarded (or verify-mode) path is refused when it holds a dot segment (`.`, `..`, also
 * percent-encoded, also with `;parameters`), an encoded `/` or `\`, a `\`, an empty segment
 * (`//`), a `#`, bad percent-encoding or an encoded control character. Anything else is left to
 * the route table: a spelling that matches no route is denied there.
 *
 * Returns undefined for a good target, else what is wrong with it.
 */
export function targetProblem(target: string): string | undefined {
  if (target.charCodeAt(0) !== 47 /* "/" */) return "the request target must be a path starting with /";
  let end = target.indexOf("?");
  if (end < 0) end = target.length;
  const path = end === target.length ? target : target.slice(0, end);
  if (path.includes("//")) return "the path has an empty segment (//)";
  if (path.includes("\\")) return "the path has a backslash";
  if (path.includes("#")) return "the path has a #";
  // The common case: nothing that decoding or normalisation could change.
  if (!path.includes("%") && !path.includes(".")) return undefined;
  let from = 1;
  while (from <= path.length) {
    let next = path.indexOf("/", from);
    if (next < 0) next = path.length;
    const segment = path.slice(from, next);
    from = next + 1;
    let decoded = segment;
    if (segment.includes("%")) {
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        return "the path has bad percent-encoding";
      }
      // eslint-disable-next-line no-control-regex
      if (/[/\\\u0000-\u001f\u007f]/.test(decoded)) return "the path has an encoded /, \\ or control character";
    }
    const semicolon = decoded.indexOf(";");
    const bare = semicolon < 0 ? decoded : decoded.slice(0, semicolon);
    if (bare === "." || bare === "..") return "the path has a dot segment (. or ..)";
  }
  return undefined;
}
