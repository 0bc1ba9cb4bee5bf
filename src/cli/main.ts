import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { type Io, UsageError } from "./io.ts";
import { registerKeys } from "./keys.ts";
import { registerOperator } from "./operator.ts";
import { registerScopes } from "./scopes.ts";
import { registerServe } from "./serve.ts";

const io: Io = {
  out: (text) => void process.stdout.write(`${text}\n`),
  err: (text) => void process.stderr.write(`${text}\n`),
  exit: (code) => process.exit(code),
};

const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

const program = new Command("keygate")
  .description("keygate: typed, scoped API keys, checked on every request")
  .version(version)
  .exitOverride()
  .showHelpAfterError();
registerScopes(program, io);
registerOperator(program, io);
registerServe(program, io);
registerKeys(program, io);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) io.exit(e.exitCode === 0 ? 0 : 2);
  if (e instanceof UsageError) {
    for (const p of e.problems) io.err(`keygate: ${p.message} [${p.code}]`);
    io.exit(2);
  }
  throw e;
}
