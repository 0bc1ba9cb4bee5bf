/**
 * A TCP relay between keygate and a service (PostgreSQL, Redis) that a test can break the way
 * networks break: `down()` refuses new connections and cuts the open ones (the service is gone),
 * `deaf = true` keeps the connections open and drops every byte both ways (a stateful firewall or a
 * half-dead NAT: the client sees nothing wrong), `up()` and `reset()` undo them.
 */
import { type Server, type Socket, connect, createServer } from "node:net";

export interface Relay {
  readonly port: number;
  deaf: boolean;
  /** Stops listening and cuts every connection. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  /** Cuts every connection (clients reconnect through the relay). */
  reset(): void;
  close(): Promise<void>;
}

export async function tcpRelay(targetPort: number): Promise<Relay> {
  const sockets = new Set<Socket>();
  let deaf = false;
  let port = 0;
  let server: Server | undefined;
  const track = (s: Socket) => {
    sockets.add(s);
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  };
  const listen = async () => {
    const s = createServer((client) => {
      const upstream = connect(targetPort, "127.0.0.1");
      track(client);
      track(upstream);
      client.on("data", (chunk) => void (deaf || upstream.write(chunk)));
      upstream.on("data", (chunk) => void (deaf || client.write(chunk)));
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", resolve);
    });
    const address = s.address();
    port = typeof address === "object" && address ? address.port : 0;
    server = s;
  };
  const reset = () => {
    for (const s of sockets) s.destroy();
  };
  const down = async () => {
    const s = server;
    server = undefined;
    reset();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();
  return {
    get port() {
      return port;
    },
    get deaf() {
      return deaf;
    },
    set deaf(value: boolean) {
      deaf = value;
    },
    down,
    up: listen,
    reset,
    close: down,
  };
}
