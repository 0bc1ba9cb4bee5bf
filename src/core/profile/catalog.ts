import type { Profile } from "./profile.ts";

/**
 * A profile's scope catalog as people read it: key types, groups of scopes with their
 * descriptions and flags (auto-granted, reserved, locked at issue), coarse scopes, bundles, and
 * the recipes of "How to choose scopes for a task". One description for `keygate scopes list`
 * and GET /v1/guide (the dashboard's scope picker).
 */
export function scopeCatalog(profile: Profile) {
  const c = profile.catalog;
  return {
    profile: { id: profile.id, title: profile.spec.title, description: profile.spec.description },
    keyTypes: profile.spec.keyTypes,
    groups: c.groups.map((g) => ({
      id: g.id,
      label: g.label,
      description: g.description,
      lockedAtIssue: g.lockedAtIssue,
      coarse: g.coarse,
      scopes: g.resources.flatMap((r) =>
        r.atoms.map((a) => ({
          scope: a.scope,
          resource: r.id,
          action: a.action,
          implies: c.implied(a).map((o) => o.scope),
          description: r.description,
          keyTypes: r.keyTypes,
          autoGrant: r.autoGrant,
          reserved: r.reserved,
          aliases: r.aliases.map((alias) => (a.action === null ? alias : `${alias}:${a.action}`)),
        })),
      ),
    })),
    coarse: c.coarse.map((t) => ({ scope: t.scope, description: t.def.description, action: t.def.action })),
    bundles: c.bundles.map((b) => ({ id: b.scope, description: b.def.description, scopes: b.members })),
    companions: profile.spec.companions ?? [],
    recipes: profile.spec.recipes ?? [],
  };
}

