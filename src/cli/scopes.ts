import type { Command } from "commander";
import type { Profile } from "../core/profile/profile.ts";
import { scopeCatalog } from "../core/profile/catalog.ts";
import type { Decision } from "../core/scopes/check.ts";
import type { KeyScopes } from "../core/scopes/grants.ts";
import { DEFAULT_PROFILE } from "../profiles/index.ts";
import { type Io, UsageError, openProfile } from "./io.ts";

/**
 * `keygate scopes list|check|explain`: a stable contract that tests and users script.
 * Exit codes: 0 allowed (or success), 1 denied, 2 usage error or invalid scopes.
 */
export function registerScopes(program: Command, io: Io): void {
  const scopes = program.command("scopes").description("inspect a profile's scope catalog and check scope decisions");

  scopes
    .command("list")
    .description("the scope catalog, grouped, with descriptions and flags")
    .option("--profile <profile>", "built-in profile name or path to a profile JSON file", DEFAULT_PROFILE)
    .option("--json", "print one JSON object")
    .action((opts: { profile: string; json?: boolean }) =>
      guard(io, opts.json, () => {
        const profile = openProfile(opts.profile);
        io.out(opts.json ? JSON.stringify(scopeCatalog(profile)) : catalogText(profile));
      }),
    );

  scopes
    .command("check")
    .description("decide whether a key with the granted scopes may make a request")
    .requiredOption("--key-type <type>", "key type of the profile (vibecode: api, app, management)")
    .requiredOption("--granted <scopes>", "comma-separated scopes on the key")
    .option("--issued <scopes>", "scopes the key was issued with, when they differ (issue-time lock)")
    .option("--required <scopes>", "comma-separated scopes the request needs (all of them)")
    .option("--method <method>", "HTTP method of the request (with --path)")
    .option("--path <path>", "request path, matched against the profile's route table")
    .option("--profile <profile>", "built-in profile name or path to a profile JSON file", DEFAULT_PROFILE)
    .option("--json", 'print exactly {"allowed","code","missing","coveredBy"} (plus "errors" on exit 2)')
    .action((opts: CheckOptions) =>
      guard(io, opts.json, () => {
        const decision = check(opts, io);
        io.out(opts.json ? JSON.stringify(decision.json) : decision.text);
        io.exit(decision.json.allowed ? 0 : 1);
      }),
    );

  scopes
    .command("explain")
    .description("what a set of scopes grants, resource by resource, after expanding bundles, coarse and auto-granted scopes")
    .requiredOption("--granted <scopes>", "comma-separated scopes")
    .option("--key-type <type>", "key type (decides auto-granted scopes and what may be held)", "api")
    .option("--profile <profile>", "built-in profile name or path to a profile JSON file", DEFAULT_PROFILE)
    .option("--json", "print one JSON object")
    .action((opts: { granted: string; keyType: string; profile: string; json?: boolean }) =>
      guard(io, opts.json, () => {
      const profile = openProfile(opts.profile);
      requireKeyType(profile, opts.keyType);
      const list = profile.normalize(opts.keyType, opts.granted);
      for (const w of list.warnings) io.err(`keygate: warning: ${w.message}`);
      if (list.errors.length > 0) throw new UsageError("INVALID_SCOPES", list.errors);
      const resources = profile.explain(opts.keyType, list);
      if (opts.json) {
        io.out(JSON.stringify({ keyType: opts.keyType, scopes: list.scopes, warnings: list.warnings, resources }));
        return;
      }
      const width = Math.max(...resources.map((r) => r.resource.length), 8);
      const lines = resources.map((r) => `  ${r.resource.padEnd(width)}  ${(r.actions ? r.actions.join(", ") : "granted").padEnd(20)}  via ${r.via.join(", ")}`);
      io.out([`${opts.keyType} key with ${list.scopes.join(", ")} grants:`, ...lines].join("\n"));
      }),
    );
}

/** Runs a subcommand; a usage error names every problem on stderr (and in JSON as "errors") and exits 2. */
function guard(io: Io, json: boolean | undefined, run: () => void): void {
  try {
    run();
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    for (const p of e.problems) io.err(`keygate: ${p.scope ? `${p.scope}: ` : ""}${p.message} [${p.code}]`);
    if (json) io.out(JSON.stringify({ allowed: false, code: e.code, missing: [], coveredBy: [], errors: e.problems }));
    io.exit(2);
  }
}

interface CheckOptions {
  keyType: string;
  granted: string;
  issued?: string;
  required?: string;
  method?: string;
  path?: string;
  profile: string;
  json?: boolean;
}

interface CheckJson {
  allowed: boolean;
  code: string | null;
  missing: string[];
  coveredBy: string[];
}

function requireKeyType(profile: Profile, keyType: string): void {
  if (!profile.keyType(keyType)) {
    throw new UsageError("UNKNOWN_KEY_TYPE", [
      { scope: "", code: "UNKNOWN_KEY_TYPE", message: `profile ${profile.id} has no key type "${keyType}" (it has ${profile.spec.keyTypes.map((k) => k.id).join(", ")})` },
    ]);
  }
}

function normalizeOrFail(profile: Profile, keyType: string, input: string, io: Io): string[] {
  const list = profile.normalize(keyType, input);
  for (const w of list.warnings) io.err(`keygate: warning: ${w.message}`);
  if (list.errors.length > 0) throw new UsageError("INVALID_SCOPES", list.errors);
  return list.scopes;
}

function check(opts: CheckOptions, io: Io): { json: CheckJson; text: string } {
  const profile = openProfile(opts.profile);
  requireKeyType(profile, opts.keyType);
  const byRoute = opts.method !== undefined || opts.path !== undefined;
  const usage = (message: string): never => {
    throw new UsageError("USAGE", [{ scope: "", code: "USAGE", message }]);
  };
  if (byRoute && opts.required !== undefined) usage("give either --required or --method with --path, not both");
  if (!byRoute && opts.required === undefined) usage("give --required, or --method with --path");
  if (byRoute && (opts.method === undefined || opts.path === undefined)) usage("--method and --path go together");

  const granted = normalizeOrFail(profile, opts.keyType, opts.granted, io);
  const key: KeyScopes = opts.issued === undefined ? profile.issue(granted) : profile.amend(profile.issue(normalizeOrFail(profile, opts.keyType, opts.issued, io)), granted);
  const compiled = profile.compileKey(opts.keyType, key);

  let decision: Decision;
  let requirementText: string[];
  let contributing: string[] = [];
  if (byRoute) {
    const match = profile.match(opts.method!, opts.path!);
    if (!match) {
      throw new UsageError("ROUTE_NOT_FOUND", [{ scope: "", code: "ROUTE_NOT_FOUND", message: `no route of profile ${profile.id} matches ${opts.method!.toUpperCase()} ${opts.path}` }]);
    }
    const access = match.value.access[compiled.keyTypeIndex]!;
    decision = profile.checkRoute(compiled, match.value);
    requirementText = access.denied ? [] : (access.requirement?.text ?? []);
    if (decision.allowed && !access.denied && access.requirement) contributing = profile.contributing(profile.effective(key), access.requirement);
  } else {
    const { requirement, problems } = profile.requirement(opts.required!);
    if (problems.length > 0) throw new UsageError("INVALID_SCOPES", problems);
    decision = profile.check(compiled, requirement);
    requirementText = requirement.text;
    if (decision.allowed) contributing = profile.contributing(profile.effective(key), requirement);
  }

  if (decision.allowed) {
    const needs = requirementText.length > 0 ? `requires ${requirementText.join(" and ")}; covered by ${contributing.join(", ")}` : "no scope required";
    return { json: { allowed: true, code: null, missing: [], coveredBy: contributing }, text: `allowed: ${needs}` };
  }
  const status = profile.errorCodes[decision.code]?.status;
  const lines = [`denied: ${decision.code}${status ? ` (HTTP ${status})` : ""}`];
  if (decision.missing.length > 0) lines.push(`  missing:    ${decision.missing.join(", ")}`);
  if (decision.coveredBy.length > 0) lines.push(`  covered by: ${decision.coveredBy.join(", ")}`);
  const message = profile.errorCodes[decision.code]?.message;
  if (message) lines.push(`  ${message}`);
  return { json: { allowed: false, code: decision.code, missing: decision.missing, coveredBy: decision.coveredBy }, text: lines.join("\n") };
}

function catalogText(profile: Profile): string {
  const data = scopeCatalog(profile);
  const out = [`${data.profile.title} (${data.profile.id}): ${data.profile.description}`, "", "Key types:"];
  for (const kt of data.keyTypes) out.push(`  ${kt.id.padEnd(12)} ${kt.prefix.padEnd(12)} ${kt.label}${kt.description ? ` — ${kt.description}` : ""}`);
  const width = Math.max(...data.groups.flatMap((g) => g.scopes.map((s) => s.scope.length)), 10);
  for (const g of data.groups) {
    const flags = [g.lockedAtIssue ? "locked at issue" : "", g.coarse ? "reached by coarse scopes" : ""].filter(Boolean);
    out.push("", `${g.label}${flags.length ? ` [${flags.join("; ")}]` : ""}${g.description ? ` — ${g.description}` : ""}`);
    for (const s of g.scopes) {
      const marks = [
        s.autoGrant.length ? `auto-granted: ${s.autoGrant.join(", ")}` : "",
        s.reserved ? "reserved" : "",
        s.implies.length ? `implies ${s.implies.join(", ")}` : "",
        s.aliases.length ? `alias ${s.aliases.join(", ")}` : "",
        `keys: ${s.keyTypes.join(", ")}`,
      ].filter(Boolean);
      out.push(`  ${s.scope.padEnd(width)}  ${s.description} (${marks.join("; ")})`);
    }
  }
  if (data.coarse.length) {
    out.push("", "Coarse scopes:");
    for (const c of data.coarse) out.push(`  ${c.scope.padEnd(width)}  ${c.description}`);
  }
  if (data.bundles.length) {
    out.push("", "Bundles (expanded when a key is issued):");
    for (const b of data.bundles) out.push(`  ${b.id.padEnd(width)}  ${b.description}: ${b.scopes.join(", ")}`);
  }
  if (data.companions.length) {
    out.push("", "Scopes that work only together:");
    for (const c of data.companions) out.push(`  ${c.scopes.join(" + ")}: ${c.note}`);
  }
  if (data.recipes.length) {
    out.push("", "Which scopes for which task:");
    for (const r of data.recipes) out.push(`  ${r.scopes.join(", ").padEnd(width)}  ${r.task}${r.note ? ` (${r.note})` : ""}`);
  }
  return out.join("\n");
}
