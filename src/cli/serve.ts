import type { Command } from "commander";
import { DEFAULT_PROFILE } from "../profiles/index.ts";
import { type Io, UsageError, openProfile } from "./io.ts";

export function registerServe(program: Command, io: Io): void {
  program
    .command("serve")
    .description("start the keygate HTTP server")
    .option("--port <port>", "TCP port (0 picks a free one)", "8080")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--profile <profile>", "built-in profile name or path to a profile JSON file", DEFAULT_PROFILE)
    .action(async (opts: { port: string; host: string; profile: string }) => {
      const port = Number(opts.port);
      if (!/^\d+$/.test(opts.port) || port > 65535) {
        throw new UsageError("USAGE", [{ scope: "", code: "USAGE", message: `--port must be a whole number from 0 to 65535, not "${opts.port}"` }]);
      }
      const profile = openProfile(opts.profile);
      // Loaded here so that the other commands start without the HTTP stack.
      const { buildServer } = await import("../gateway/server.ts");
      const app = buildServer({ profile, logger: true });
      try {
        await app.listen({ port, host: opts.host });
      } catch (e) {
        io.err(`keygate: cannot listen on ${opts.host}:${port}: ${(e as Error).message}`);
        io.exit(1);
      }
      const address = app.server.address();
      const bound = typeof address === "object" && address ? address.port : port;
      io.out(`keygate listening on http://${opts.host.includes(":") ? `[${opts.host}]` : opts.host}:${bound} (profile ${profile.id})`);
      const stop = () => void app.close().then(() => io.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
