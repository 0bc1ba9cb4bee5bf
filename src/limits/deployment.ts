import { createHmac } from "node:crypto";

/**
 * A deployment's id in Redis: every key and channel keygate uses there starts with
 * kg:<deployment id>:, so deployments sharing one Redis share no rate-limit counters and hear
 * none of each other's cache invalidations. By default it is derived from the server secret,
 * which a deployment's nodes share (the id does not reveal the secret); `keygate serve
 * --deployment-id` sets it.
 */
export function deploymentId(serverSecret: string): string {
  return createHmac("sha256", serverSecret).update("keygate deployment id").digest("hex").slice(0, 12);
}

/** What a configured deployment id may hold: it is part of every Redis key and channel name. */
export const DEPLOYMENT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The start of every Redis key and channel name of a deployment. */
export const redisNamespace = (deployment: string): string => `kg:${deployment}:`;
