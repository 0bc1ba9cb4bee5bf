import type { Command } from "commander";
import { createUser, issueManagementKey } from "../manage/users.ts";
import { type Io, UsageError } from "./io.ts";
import { DEFAULT_OWNER_EMAIL, initInstance, openInstance } from "./setup.ts";
import { KeygateError } from "../core/errors.ts";

/** Operator commands: they open the store directly, like `gitea admin`. */
export function registerOperator(program: Command, io: Io): void {
  program
    .command("init")
    .description("set up a data directory: server secret, owner account, and the owner's management key (printed once)")
    .option("--data-dir <dir>", "data directory (default: $KEYGATE_DATA_DIR or ./data)")
    .option("--database <url>", "PostgreSQL URL instead of the embedded SQLite (default: $KEYGATE_DATABASE_URL)")
    .option("--profile <profile>", "profile of this keygate (default: vibecode)")
    .option("--owner-email <email>", "the owner's email", DEFAULT_OWNER_EMAIL)
    .option("--json", 'print exactly {"ownerId", "managementKey"}')
    .action(async (opts: { dataDir?: string; database?: string; profile?: string; ownerEmail: string; json?: boolean }) => {
      const { instance, ownerId, managementKey } = await initInstance(opts).catch(rethrowAsUsage);
      await instance.close();
      if (opts.json) io.out(JSON.stringify({ ownerId, managementKey }));
      else {
        io.out(`keygate is set up in ${instance.dataDir}.`);
        io.out(`Owner: ${opts.ownerEmail} (${ownerId})`);
        if (managementKey) io.out(`Management key (shown once, store it now): ${managementKey}`);
      }
    });

  const users = program.command("users").description("manage user accounts");
  users
    .command("create")
    .description("add a user and, with --management-key-scopes, print a management key for them (once)")
    .requiredOption("--email <email>", "the user's email")
    .option("--name <name>", "display name")
    .option("--management-key-scopes <scopes>", "comma-separated management scopes for a key acting as this user")
    .option("--data-dir <dir>", "data directory (default: $KEYGATE_DATA_DIR or ./data)")
    .option("--database <url>", "PostgreSQL URL (default: $KEYGATE_DATABASE_URL)")
    .option("--json", 'print exactly {"userId"} or {"userId", "managementKey"}')
    .action(async (opts: { email: string; name?: string; managementKeyScopes?: string; dataDir?: string; database?: string; json?: boolean }) => {
      const instance = await openInstance(opts);
      try {
        // Scopes are checked before the user is added, so a refused command changes nothing.
        const managementType = instance.kg.profile.spec.keyTypes.find((k) => k.portalless);
        if (opts.managementKeyScopes !== undefined && managementType) {
          const list = instance.kg.profile.normalize(managementType.id, opts.managementKeyScopes);
          if (list.errors.length > 0) throw new UsageError("INVALID_SCOPES", list.errors);
        }
        const user = await createUser(instance.kg, null, { email: opts.email, name: opts.name }).catch(rethrowAsUsage);
        const key = opts.managementKeyScopes === undefined ? undefined : await issueManagementKey(instance.kg, user, opts.managementKeyScopes).catch(rethrowAsUsage);
        if (opts.json) io.out(JSON.stringify(key ? { userId: user.id, managementKey: key.rawKey } : { userId: user.id }));
        else {
          io.out(`User ${user.email} (${user.id})`);
          if (key) io.out(`Management key (shown once, store it now): ${key.rawKey}`);
        }
      } finally {
        await instance.close();
      }
    });
}

/** Refusals of the management layer are the caller's mistakes: exit code 2 with the reason. */
function rethrowAsUsage(e: unknown): never {
  if (e instanceof KeygateError) {
    const errors = e.details?.errors as { scope: string; code: string; message: string }[] | undefined;
    throw new UsageError(e.code, errors ?? [{ scope: e.param ?? "", code: e.code, message: e.message }]);
  }
  throw e;
}
