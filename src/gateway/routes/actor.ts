import type { FastifyRequest } from "fastify";
import { KeygateError } from "../../core/errors.ts";
import type { Actor, Keygate } from "../../manage/context.ts";

/** The user a verified key acts for (its owner), or a signed-in session's user (acting through no key), as a management actor. */
export async function actorOf(kg: Keygate, request: FastifyRequest): Promise<Actor> {
  const user = await kg.store.getUser(request.auth.key.record.ownerId);
  if (!user) throw new KeygateError("INVALID_API_KEY", { message: "The key's owner no longer exists." });
  return { user, keyId: request.auth.session ? null : request.auth.key.record.id, ip: request.auth.clientIp };
}
