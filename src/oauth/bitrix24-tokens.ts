/**
 * Users' Bitrix24 OAuth tokens (issue 15 §2, docs/oauth.md "Real Bitrix24 portals"): keygate is
 * the OAuth client of a Bitrix24 portal whose upstream carries the application's clientId and
 * clientSecret. One row per portal and keygate user (migration 013) keeps the Bitrix24 user they
 * are, the portal's member_id and REST endpoint (client_endpoint), and their access and refresh
 * tokens sealed with AES-256-GCM under a key derived from the server secret (SecretBox, kind
 * "keygate bitrix24 user tokens v1", bound to the portal and user ids): the database alone opens
 * nothing.
 *
 * Access tokens live an hour; keygate refreshes one at Bitrix24's token server (grant_type
 * refresh_token) when less than a minute is left, or when Bitrix24 answers expired_token or
 * invalid_token. In a node one refresh runs per user at a time; between nodes the row's version
 * decides (compare-and-swap): a node that loses the race, or whose refresh token was spent by
 * another node (invalid_grant), reads the row again. A refresh token that is dead deletes the row,
 * and the request answers 401 BITRIX24_AUTHORIZATION_EXPIRED: the user authorizes the app again.
 */
import { KeygateError } from "../core/errors.ts";
import type { Keygate } from "../manage/context.ts";
import { SecretBox } from "../store/credentials.ts";
import type { Row } from "../store/rows.ts";
import type { Store } from "../store/store.ts";
import { postTokenForm } from "../upstream/bitrix24/client.ts";
import { type Bitrix24ErrorBody, upstreamErrorOf } from "../upstream/bitrix24/errors.ts";
import { INTERNAL, type OutboundPolicy } from "../upstream/outbound.ts";

/** Bitrix24's token server, where codes are exchanged and tokens refreshed. */
export const BITRIX24_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/";
/** A refresh token lives 28 days (Bitrix24 does not say so in its answer). */
export const REFRESH_TOKEN_TTL_MS = 28 * 86_400_000;
/** An access token with less than this left is refreshed before it is used. */
export const REFRESH_AHEAD_MS = 60_000;
const TOKEN_SERVER_TIMEOUT_MS = 15_000;
const SEALED_KIND = "keygate bitrix24 user tokens v1";

/** A user's tokens on a portal, opened. */
export interface Bitrix24Tokens {
  portalId: string;
  /** The keygate user. */
  userId: string;
  /** Who they are on the portal (the token answer's user_id). */
  bitrixUserId: number;
  memberId: string;
  /** The portal's REST endpoint: https://<portal>/rest/. */
  clientEndpoint: string;
  accessToken: string;
  refreshToken: string;
  /** When the access token ends (epoch ms). */
  expiresAt: number;
  /** When the refresh token ends (epoch ms). */
  refreshExpiresAt: number;
  /** Grows with every write (compare-and-swap). */
  version: number;
  updatedAt: number;
}

/** Tokens received for a user, to store: from the code exchange, or posted by Bitrix24 elsewhere (AUTH_ID, REFRESH_ID of a placement or an event). */
export type ReceivedTokens = Omit<Bitrix24Tokens, "version" | "updatedAt" | "refreshExpiresAt"> & { refreshExpiresAt?: number };

/** The Bitrix24 application of a portal: its upstream's clientId and clientSecret. */
export interface Bitrix24App {
  clientId: string;
  clientSecret: string;
}

/** Bitrix24's token server refused (error is its code: invalid_grant, invalid_client, …). */
export class TokenServerRefusal extends Error {
  readonly error: string;
  constructor(error: string, description: string) {
    super(description);
    this.error = error;
  }
}

/** The fields of a token answer keygate uses. */
export interface TokenAnswer {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  memberId: string;
  clientEndpoint: string;
  userId: number;
}

const COLUMNS = "portal_id, user_id, bitrix_user_id, member_id, client_endpoint, tokens, expires_at, refresh_expires_at, version, updated_at";
const owner = (portalId: string, userId: string) => `${portalId} ${userId}`;
const boxes = new Map<string, SecretBox>();
/** The box of a server secret (its key derivation runs once). */
function boxOf(serverSecret: string): SecretBox {
  let box = boxes.get(serverSecret);
  if (box === undefined) boxes.set(serverSecret, (box = new SecretBox(serverSecret, SEALED_KIND)));
  return box;
}

function fromRow(serverSecret: string, r: Row): Bitrix24Tokens {
  const portalId = String(r["portal_id"]);
  const userId = String(r["user_id"]);
  const sealed = JSON.parse(boxOf(serverSecret).open(owner(portalId, userId), String(r["tokens"]))) as { access: string; refresh: string };
  return {
    portalId,
    userId,
    bitrixUserId: Number(r["bitrix_user_id"]),
    memberId: String(r["member_id"]),
    clientEndpoint: String(r["client_endpoint"]),
    accessToken: sealed.access,
    refreshToken: sealed.refresh,
    expiresAt: Number(r["expires_at"]),
    refreshExpiresAt: Number(r["refresh_expires_at"]),
    version: Number(r["version"]),
    updatedAt: Number(r["updated_at"]),
  };
}

const sealedTokens = (serverSecret: string, t: { portalId: string; userId: string; accessToken: string; refreshToken: string }) =>
  boxOf(serverSecret).seal(owner(t.portalId, t.userId), JSON.stringify({ access: t.accessToken, refresh: t.refreshToken }));

/** A user's tokens on a portal, or undefined. */
export async function loadBitrix24Tokens(kg: Pick<Keygate, "store" | "serverSecret">, portalId: string, userId: string): Promise<Bitrix24Tokens | undefined> {
  const [row] = await kg.store.sql.all(`SELECT ${COLUMNS} FROM bitrix24_tokens WHERE portal_id = ? AND user_id = ?`, [portalId, userId]);
  return row && fromRow(kg.serverSecret, row);
}

/**
 * Stores a user's Bitrix24 tokens, replacing any they had on the portal: after the code exchange,
 * and for tokens Bitrix24 gave keygate elsewhere (a placement's AUTH_ID and REFRESH_ID). The
 * refresh token lives 28 days unless told otherwise. Returns what is stored.
 */
export async function storeBitrix24Tokens(kg: Pick<Keygate, "store" | "serverSecret" | "now">, t: ReceivedTokens): Promise<Bitrix24Tokens> {
  const now = kg.now();
  const refreshExpiresAt = t.refreshExpiresAt ?? now + REFRESH_TOKEN_TTL_MS;
  await kg.store.sql.atomically([
    {
      sql:
        `INSERT INTO bitrix24_tokens (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?) ` +
        "ON CONFLICT (portal_id, user_id) DO UPDATE SET bitrix_user_id = excluded.bitrix_user_id, member_id = excluded.member_id, client_endpoint = excluded.client_endpoint, " +
        "tokens = excluded.tokens, expires_at = excluded.expires_at, refresh_expires_at = excluded.refresh_expires_at, version = bitrix24_tokens.version + 1, updated_at = excluded.updated_at",
      params: [t.portalId, t.userId, t.bitrixUserId, t.memberId, t.clientEndpoint, sealedTokens(kg.serverSecret, t), t.expiresAt, refreshExpiresAt, now],
    },
  ]);
  const stored = await loadBitrix24Tokens(kg, t.portalId, t.userId);
  if (stored === undefined) throw new Error("the Bitrix24 tokens just stored are gone (the user left the portal meanwhile)");
  return stored;
}

/** The keygate user who is `bitrixUserId` on the portal (by the tokens they authorized with), or undefined. */
export async function userOfBitrixUser(store: Store, portalId: string, bitrixUserId: number): Promise<string | undefined> {
  const rows = await store.sql.all("SELECT user_id FROM bitrix24_tokens WHERE portal_id = ? AND bitrix_user_id = ? ORDER BY updated_at DESC LIMIT 1", [portalId, bitrixUserId]);
  return rows[0] === undefined ? undefined : String(rows[0]["user_id"]);
}

/** The 401 of a user whose Bitrix24 authorization is gone. */
export function authorizationExpired(): KeygateError {
  return new KeygateError("BITRIX24_AUTHORIZATION_EXPIRED");
}

/** The token answer's fields, or undefined when it is not one. */
export function tokenAnswerOf(body: unknown): TokenAnswer | undefined {
  if (typeof body !== "object" || body === null) return undefined;
  const b = body as Record<string, unknown>;
  const text = (name: string) => (typeof b[name] === "string" && b[name] !== "" ? (b[name] as string) : undefined);
  const accessToken = text("access_token");
  const refreshToken = text("refresh_token");
  const memberId = text("member_id");
  const clientEndpoint = text("client_endpoint");
  const expiresIn = Number(b["expires_in"]);
  const userId = Number(b["user_id"]);
  if (accessToken === undefined || refreshToken === undefined || memberId === undefined || clientEndpoint === undefined) return undefined;
  if (!Number.isFinite(expiresIn) || expiresIn <= 0 || !Number.isSafeInteger(userId) || userId <= 0) return undefined;
  return { accessToken, refreshToken, expiresIn, memberId, clientEndpoint, userId };
}

export interface UserTokensOptions {
  /** Bitrix24's token server (`serve --bitrix24-token-url`); a path (/sandbox/oauth/token/) is on keygate's own address. */
  tokenUrl: string;
  /** keygate's own listening address (its sandbox is called there without the outbound rule); undefined when not listening. */
  ownBaseUrl: () => string | undefined;
}

/** The users' tokens of one node: the token server, refreshes (one at a time per user) and what it opened last. */
export class Bitrix24UserTokens {
  readonly #kg: Keygate;
  readonly #options: UserTokensOptions;
  readonly #held = new Map<string, Bitrix24Tokens>();
  readonly #refreshing = new Map<string, Promise<Bitrix24Tokens>>();

  constructor(kg: Keygate, options: UserTokensOptions) {
    this.#kg = kg;
    this.#options = options;
  }

  /** The outbound rule for a URL: none for keygate's own address (its sandbox), the operator's otherwise. */
  outboundFor(url: string): OutboundPolicy {
    const own = this.#options.ownBaseUrl();
    return own !== undefined && new URL(url).origin === new URL(own).origin ? INTERNAL : this.#kg.outbound;
  }

  /** The token server's absolute URL. */
  tokenUrl(): string {
    const { tokenUrl } = this.#options;
    if (!tokenUrl.startsWith("/")) return tokenUrl;
    const own = this.#options.ownBaseUrl();
    if (own === undefined) throw new KeygateError("SANDBOX_UNREACHABLE", { message: "The Bitrix24 token server is keygate's own sandbox (--bitrix24-token-url is a path), and this keygate is not listening." });
    return new URL(tokenUrl, own).href;
  }

  /** A grant at the token server: the answer, a TokenServerRefusal, or an UpstreamError when it gave none. */
  async grant(app: Bitrix24App, fields: Record<string, string>): Promise<TokenAnswer> {
    const url = this.tokenUrl();
    const { status, body } = await postTokenForm(url, { ...fields, client_id: app.clientId, client_secret: app.clientSecret }, { timeoutMs: TOKEN_SERVER_TIMEOUT_MS, outbound: this.outboundFor(url) });
    const answer = status === 200 ? tokenAnswerOf(body) : undefined;
    if (answer !== undefined) return answer;
    const refusal = body as Partial<Bitrix24ErrorBody> | undefined;
    if (typeof refusal?.error === "string") throw new TokenServerRefusal(refusal.error, String(refusal.error_description ?? ""));
    throw upstreamErrorOf("oauth.token", { error: "ERROR_UNEXPECTED_ANSWER", error_description: "The token server gave no token answer." }, status);
  }

  /** Stores tokens and holds them for this node's next calls. */
  async save(t: ReceivedTokens): Promise<Bitrix24Tokens> {
    const stored = await storeBitrix24Tokens(this.#kg, t);
    this.#held.set(owner(t.portalId, t.userId), stored);
    return stored;
  }

  /** The user's tokens, refreshed first when the access token is about to end; 401 BITRIX24_AUTHORIZATION_EXPIRED when there are none. */
  async current(app: Bitrix24App, portalId: string, userId: string): Promise<Bitrix24Tokens> {
    const key = owner(portalId, userId);
    const held = this.#held.get(key);
    if (held !== undefined && this.#fresh(held)) return held;
    // Another node may have refreshed them already: the row first, the token server only if it is about to end too.
    const stored = await loadBitrix24Tokens(this.#kg, portalId, userId);
    if (stored === undefined) {
      this.#held.delete(key);
      throw authorizationExpired();
    }
    this.#held.set(key, stored);
    return this.#fresh(stored) ? stored : this.#refresh(app, stored);
  }

  /** Bitrix24 refused `rejected`: the stored token if another is there (another node refreshed), else a refreshed one. */
  async renew(app: Bitrix24App, portalId: string, userId: string, rejected: string): Promise<Bitrix24Tokens> {
    const key = owner(portalId, userId);
    const stored = await loadBitrix24Tokens(this.#kg, portalId, userId);
    if (stored === undefined) {
      this.#held.delete(key);
      throw authorizationExpired();
    }
    this.#held.set(key, stored);
    return stored.accessToken !== rejected && this.#fresh(stored) ? stored : this.#refresh(app, stored);
  }

  /** Whether the access token has more than a minute left. */
  #fresh(tokens: Bitrix24Tokens): boolean {
    return tokens.expiresAt - this.#kg.now() >= REFRESH_AHEAD_MS;
  }

  /** One refresh per user at a time in this node; between nodes, the row's version decides. */
  #refresh(app: Bitrix24App, row: Bitrix24Tokens): Promise<Bitrix24Tokens> {
    const key = owner(row.portalId, row.userId);
    let running = this.#refreshing.get(key);
    if (running === undefined) {
      running = this.#refreshOnce(app, row).finally(() => this.#refreshing.delete(key));
      this.#refreshing.set(key, running);
    }
    return running;
  }

  async #refreshOnce(app: Bitrix24App, row: Bitrix24Tokens): Promise<Bitrix24Tokens> {
    const key = owner(row.portalId, row.userId);
    const now = this.#kg.now();
    let answer: TokenAnswer;
    try {
      if (now >= row.refreshExpiresAt) throw new TokenServerRefusal("invalid_grant", "The refresh token has expired.");
      answer = await this.grant(app, { grant_type: "refresh_token", refresh_token: row.refreshToken });
    } catch (error) {
      if (!(error instanceof TokenServerRefusal)) throw error;
      if (error.error !== "invalid_grant") throw upstreamErrorOf("oauth.token", { error: error.error, error_description: error.message });
      // Spent by another node's refresh (its tokens are stored), or dead: then the user authorizes again.
      const stored = await loadBitrix24Tokens(this.#kg, row.portalId, row.userId);
      if (stored !== undefined && stored.version !== row.version) {
        this.#held.set(key, stored);
        return stored;
      }
      this.#held.delete(key);
      await this.#kg.store.sql.atomically([{ sql: "DELETE FROM bitrix24_tokens WHERE portal_id = ? AND user_id = ? AND version = ?", params: [row.portalId, row.userId, row.version] }]);
      throw authorizationExpired();
    }
    const next: Bitrix24Tokens = {
      ...row,
      accessToken: answer.accessToken,
      refreshToken: answer.refreshToken,
      memberId: answer.memberId,
      clientEndpoint: answer.clientEndpoint,
      expiresAt: now + answer.expiresIn * 1000,
      refreshExpiresAt: now + REFRESH_TOKEN_TTL_MS,
      version: row.version + 1,
      updatedAt: now,
    };
    const written = await this.#kg.store.sql.atomically([
      {
        sql: "UPDATE bitrix24_tokens SET tokens = ?, member_id = ?, client_endpoint = ?, expires_at = ?, refresh_expires_at = ?, version = ?, updated_at = ? WHERE portal_id = ? AND user_id = ? AND version = ?",
        params: [sealedTokens(this.#kg.serverSecret, next), next.memberId, next.clientEndpoint, next.expiresAt, next.refreshExpiresAt, next.version, now, row.portalId, row.userId, row.version],
        mustChange: 1,
      },
    ]);
    if (written) {
      this.#held.set(key, next);
      return next;
    }
    // Another node wrote first (or the user left the portal): the row as it is now decides.
    const stored = await loadBitrix24Tokens(this.#kg, row.portalId, row.userId);
    if (stored === undefined) {
      this.#held.delete(key);
      throw authorizationExpired();
    }
    this.#held.set(key, stored);
    return stored;
  }
}
