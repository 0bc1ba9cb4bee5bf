import { MemoryLimiter } from "../../src/limits/memory.ts";
import { limiterContract } from "./contract.ts";

limiterContract("memory", async (clock) => new MemoryLimiter({ now: () => clock.now }));
