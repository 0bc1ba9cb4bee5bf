import { MemoryLimiter } from "../../src/limits/memory.ts";
import { limiterContract } from "./contract.ts";
import { limiterProperties } from "./property.ts";

limiterContract("memory", async (clock) => new MemoryLimiter({ now: () => clock.now }));
limiterProperties("memory", async (clock) => new MemoryLimiter({ now: () => clock.now }));
