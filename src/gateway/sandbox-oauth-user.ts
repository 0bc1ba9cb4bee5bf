import type { FastifyRequest } from "fastify";
import { type SessionLifetimes, resumeSession } from "../accounts/sessions.ts";
import type { Keygate } from "../manage/context.ts";
import { sandboxUserFor } from "../upstream/sandbox/index.ts";
import { sessionToken } from "./session.ts";

/**
 * Who signs in to a sandbox portal's Bitrix24 OAuth (src/upstream/sandbox/oauth.ts): the sandbox's
 * users are keygate's portal members, so the browser's keygate sign-in is its sign-in to the
 * portal, and the member acts as their sandbox user (the one with their email).
 */
export function sandboxOAuthUser(kg: Keygate, lifetimes: SessionLifetimes) {
  return async (request: FastifyRequest, portalId: string): Promise<number | "sign-in" | "not-member"> => {
    const token = sessionToken(request.headers);
    const found = token === undefined ? undefined : await resumeSession(kg, token, lifetimes);
    if (found === undefined) return "sign-in";
    if ((await kg.store.getMember(portalId, found.user.id)) === undefined) return "not-member";
    return sandboxUserFor(kg.store, portalId, found.user, kg.serverSecret, kg.now());
  };
}
