import type { KeyFormat } from "../core/keys/format.ts";
import type { Profile } from "../core/profile/profile.ts";
import type { KeyRecord, Portal, Store, User } from "../store/store.ts";
import type { OutboundPolicy } from "../upstream/outbound.ts";

/** What management operations work with; the gateway and the operator CLI each build one. */
export interface Keygate {
  profile: Profile;
  store: Store;
  /** Kept outside the database; part of every key digest. */
  serverSecret: string;
  format: KeyFormat;
  /** Where portals' upstream URLs may point (src/upstream/outbound.ts). */
  outbound: OutboundPolicy;
  now(): number;
  /** Called after every stored change of a key, before the change is reported: caches drop the key. */
  keyChanged(key: KeyRecord): void;
  /** Called after a portal's settings changed: caches of them drop it. */
  portalChanged(portal: Portal): void;
}

/** Who asks: a user, through a key (null from the operator CLI), from an address. */
export interface Actor {
  user: User;
  keyId: string | null;
  ip: string | null;
}
