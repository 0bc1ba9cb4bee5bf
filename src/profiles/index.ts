import { readFileSync } from "node:fs";
import { Profile } from "../core/profile/profile.ts";
import type { ProfileSpec } from "../core/profile/spec.ts";
import { ProfileError } from "../core/scopes/catalog.ts";
import { atender } from "./atender.ts";
import { rogeriq } from "./rogeriq.ts";
import { type ProfileData, asSpec, profileShapeProblems } from "./schema.ts";
import { vibecode } from "./vibecode.ts";

export const BUILTIN_PROFILES: Record<string, ProfileSpec> = { vibecode, atender, rogeriq };
export const DEFAULT_PROFILE = "vibecode";

const compiled = new Map<string, Profile>();

/** Validates a profile document (built-in or a user's) and compiles it. Throws ProfileError naming the source and listing every problem. */
export function compileProfileData(data: unknown, source: string): Profile {
  const problems = profileShapeProblems(data);
  if (problems.length > 0) throw new ProfileError(source, problems);
  try {
    return new Profile(asSpec(data as ProfileData));
  } catch (e) {
    if (e instanceof ProfileError) throw new ProfileError(source, e.problems);
    throw e;
  }
}

/** A built-in profile by name, or a user's profile from a JSON file path. */
export function loadProfile(nameOrPath: string): Profile {
  const cached = compiled.get(nameOrPath);
  if (cached) return cached;
  const builtin = BUILTIN_PROFILES[nameOrPath];
  let profile: Profile;
  if (builtin) profile = compileProfileData(builtin, nameOrPath);
  else if (nameOrPath.includes("/") || nameOrPath.endsWith(".json")) {
    let text: string;
    try {
      text = readFileSync(nameOrPath, "utf8");
    } catch (e) {
      throw new ProfileError(nameOrPath, [`cannot read the file: ${(e as Error).message}`]);
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new ProfileError(nameOrPath, [`not valid JSON: ${(e as Error).message}`]);
    }
    profile = compileProfileData(data, nameOrPath);
  } else {
    throw new ProfileError(nameOrPath, [`no built-in profile "${nameOrPath}" (built-in: ${Object.keys(BUILTIN_PROFILES).join(", ")}); give a path to a JSON file for your own`]);
  }
  compiled.set(nameOrPath, profile);
  return profile;
}
