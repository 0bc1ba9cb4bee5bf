import type { Command } from "commander";
import { createUser, issueManagementKey } from "../manage/users.ts";
import { type Io, UsageError } from "./io.ts";
import { DEFAULT_OWNER_EMAIL, defaultPublicUrl, initInstance, issueOwnerCredentials, openInstance, passwordFrom } from "./setup.ts";
import { createPasswordLink, linkUrl, setPassword } from "../accounts/links.ts";
import { KeygateError } from "../core/errors.ts";

/** Operator commands: they open the store directly, like `gitea admin`. */
export function registerOperator(program: Command, io: Io): void {
  program
    .command("init")
    .description("set up a data directory: server secret, owner account, the owner's management key and, without a password, a one-time sign-in link (printed once)")
    .option("--data-dir <dir>", "data directory (default: $KEYGATE_DATA_DIR or ./data)")
    .option("--database <url>", "PostgreSQL URL instead of the embedded SQLite (default: $KEYGATE_DATABASE_URL)")
    .option("--profile <profile>", "profile of this keygate (default: vibecode)")
    .option("--owner-email <email>", "the owner's email", DEFAULT_OWNER_EMAIL)
    .option("--owner-password-file <file>", "the owner's password, read from this file (default: $KEYGATE_OWNER_PASSWORD; neither: a one-time sign-in link is printed)")
    .option("--public-url <url>", "the base URL the sign-in link points to (default: $KEYGATE_PUBLIC_URL or http://127.0.0.1:8080)")
    .option("--json", 'print exactly {"ownerId", "managementKey", "signInUrl"}')
    .action(async (opts: { dataDir?: string; database?: string; profile?: string; ownerEmail: string; ownerPasswordFile?: string; publicUrl?: string; json?: boolean }) => {
      const ownerPassword = passwordFrom(opts.ownerPasswordFile, "--owner-password-file", "KEYGATE_OWNER_PASSWORD");
      const { instance, ownerId } = await initInstance({ ...opts, ownerPassword }).catch(rethrowAsUsage);
      try {
        const { managementKey, signInUrl } = await issueOwnerCredentials(instance, ownerId, opts.publicUrl ?? defaultPublicUrl());
        if (opts.json) io.out(JSON.stringify({ ownerId, managementKey, signInUrl }));
        else {
          io.out(`keygate is set up in ${instance.dataDir}.`);
          io.out(`Owner: ${opts.ownerEmail} (${ownerId})`);
          if (managementKey) io.out(`Management key (shown once, store it now): ${managementKey}`);
          if (signInUrl) io.out(`Set the owner's password (one-time link, valid 24 hours): ${signInUrl}`);
        }
      } finally {
        await instance.close();
      }
    });

  const users = program.command("users").description("manage user accounts");
  users
    .command("create")
    .description("add a user: with --password-file it has that password, else a one-time link to set it is printed; with --management-key-scopes a management key for them too (printed once)")
    .requiredOption("--email <email>", "the user's email")
    .option("--name <name>", "display name")
    .option("--role <role>", "user, or staff: the instance's team, who sees and answers every feedback ticket (docs/feedback.md)", "user")
    .option("--password-file <file>", "the user's password, read from this file")
    .option("--management-key-scopes <scopes>", "comma-separated management scopes for a key acting as this user")
    .option("--public-url <url>", "the base URL the link points to (default: $KEYGATE_PUBLIC_URL or http://127.0.0.1:8080)")
    .option("--data-dir <dir>", "data directory (default: $KEYGATE_DATA_DIR or ./data)")
    .option("--database <url>", "PostgreSQL URL (default: $KEYGATE_DATABASE_URL)")
    .option("--json", 'print exactly {"userId", "signInUrl"}, with "managementKey" when asked for one (signInUrl is null with --password-file)')
    .action(
      async (opts: { email: string; name?: string; role: string; passwordFile?: string; managementKeyScopes?: string; publicUrl?: string; dataDir?: string; database?: string; json?: boolean }) => {
        if (opts.role !== "user" && opts.role !== "staff") throw new UsageError("INVALID_ROLE", [{ scope: "", code: "INVALID_ROLE", message: `--role must be user or staff, not ${JSON.stringify(opts.role)}` }]);
        const password = passwordFrom(opts.passwordFile, "--password-file");
        const instance = await openInstance(opts);
        try {
          // Scopes are checked before the user is added, so a refused command changes nothing.
          const managementType = instance.kg.profile.spec.keyTypes.find((k) => k.portalless);
          if (opts.managementKeyScopes !== undefined && managementType) {
            const list = instance.kg.profile.normalize(managementType.id, opts.managementKeyScopes);
            if (list.errors.length > 0) throw new UsageError("INVALID_SCOPES", list.errors);
          }
          const user = await createUser(instance.kg, null, { email: opts.email, name: opts.name, role: opts.role }).catch(rethrowAsUsage);
          if (password !== undefined) await setPassword(instance.kg, null, user, password);
          const signInUrl = password === undefined ? linkUrl(opts.publicUrl ?? defaultPublicUrl(), (await createPasswordLink(instance.kg, null, user)).token) : null;
          const key = opts.managementKeyScopes === undefined ? undefined : await issueManagementKey(instance.kg, user, opts.managementKeyScopes).catch(rethrowAsUsage);
          if (opts.json) io.out(JSON.stringify(key ? { userId: user.id, signInUrl, managementKey: key.rawKey } : { userId: user.id, signInUrl }));
          else {
            io.out(`User ${user.email} (${user.id})`);
            if (signInUrl) io.out(`Set the password (one-time link, valid 24 hours): ${signInUrl}`);
            if (key) io.out(`Management key (shown once, store it now): ${key.rawKey}`);
          }
        } finally {
          await instance.close();
        }
      },
    );

  users
    .command("reset-password")
    .description("print a new one-time link (valid 24 hours) where the user sets a new password; earlier links stop working")
    .requiredOption("--email <email>", "the user's email")
    .option("--public-url <url>", "the base URL the link points to (default: $KEYGATE_PUBLIC_URL or http://127.0.0.1:8080)")
    .option("--data-dir <dir>", "data directory (default: $KEYGATE_DATA_DIR or ./data)")
    .option("--database <url>", "PostgreSQL URL (default: $KEYGATE_DATABASE_URL)")
    .option("--json", 'print exactly {"userId", "signInUrl"}')
    .action(async (opts: { email: string; publicUrl?: string; dataDir?: string; database?: string; json?: boolean }) => {
      const instance = await openInstance(opts);
      try {
        const user = await instance.kg.store.getUserByEmail(opts.email.trim());
        if (!user) throw new UsageError("USER_NOT_FOUND", [{ scope: "", code: "USER_NOT_FOUND", message: `no user with the email ${opts.email}` }]);
        const signInUrl = linkUrl(opts.publicUrl ?? defaultPublicUrl(), (await createPasswordLink(instance.kg, null, user)).token);
        if (opts.json) io.out(JSON.stringify({ userId: user.id, signInUrl }));
        else io.out(`Set a new password for ${user.email} (one-time link, valid 24 hours; the password stays until it is used): ${signInUrl}`);
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
