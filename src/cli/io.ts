import type { Profile } from "../core/profile/profile.ts";
import { ProfileError } from "../core/scopes/catalog.ts";
import type { ScopeProblem } from "../core/scopes/normalize.ts";
import { loadProfile } from "../profiles/index.ts";

/** Where commands write and how they end; tests and main() give their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  exit(code: number): never;
}

/** A mistake in what the user asked for: exit code 2, every problem named. */
export class UsageError extends Error {
  readonly code: string;
  readonly problems: ScopeProblem[];
  constructor(code: string, problems: ScopeProblem[]) {
    super(problems.map((p) => p.message).join("; "));
    this.code = code;
    this.problems = problems;
  }
}

export function openProfile(nameOrPath: string): Profile {
  try {
    return loadProfile(nameOrPath);
  } catch (e) {
    if (!(e instanceof ProfileError)) throw e;
    throw new UsageError("INVALID_PROFILE", e.problems.map((message) => ({ scope: "", code: "INVALID_PROFILE", message: `${nameOrPath}: ${message}` })));
  }
}
