import ipaddr from "ipaddr.js";

/**
 * Exact-address allow-lists (seed 003: IPv4 and IPv6, no CIDR). Addresses are compared in one
 * canonical form: IPv6 without leading zeros or `::` shortening, IPv4-mapped IPv6 as IPv4, so
 * `2001:db8::1` equals `2001:0db8:0:0:0:0:0:1` and `::ffff:203.0.113.42` equals `203.0.113.42`.
 */
export function normalizeIp(address: string): string | undefined {
  if (!ipaddr.isValid(address)) return undefined;
  // ipaddr accepts loose IPv4 forms ("1", "0x7f.1"); an allow-list entry must be a plain address.
  if (!address.includes(":") && !ipaddr.IPv4.isValidFourPartDecimal(address)) return undefined;
  return ipaddr.process(address).toNormalizedString();
}

export type IpListProblem = { index: number; value: string; message: string };

/** Normalises an allow-list; every bad entry is reported (CIDR gets its own message). */
export function normalizeIpList(entries: readonly string[]): { ips: string[]; problems: IpListProblem[] } {
  const ips: string[] = [];
  const problems: IpListProblem[] = [];
  entries.forEach((value, index) => {
    const trimmed = value.trim();
    if (trimmed.includes("/")) {
      problems.push({ index, value, message: "CIDR subnets are not supported: list exact addresses" });
      return;
    }
    const ip = normalizeIp(trimmed);
    if (ip === undefined) problems.push({ index, value, message: `"${value}" is not an IPv4 or IPv6 address` });
    else if (!ips.includes(ip)) ips.push(ip);
  });
  return { ips, problems };
}

/** The IPv6 prefix length a client is counted by (docs/limits.md, "Per address"): a host's usual allocation. */
export const IPV6_CLIENT_PREFIX = 64;

/**
 * Who a per-address limit counts (the platform limit of keyless requests, the failed-authentication
 * throttle): an IPv4 client by its address; an IPv6 client by its network of `ipv6Prefix` bits,
 * since one host commonly holds a whole /64 and could otherwise spend 2⁶⁴ budgets. Takes an
 * address as normalizeIp gives it; anything else counts as itself.
 */
export function clientSubject(ip: string, ipv6Prefix = IPV6_CLIENT_PREFIX): string {
  if (!ip.includes(":") || ipv6Prefix >= 128) return ip;
  // normalizeIp's form: eight groups, no "::": the first four are the /64.
  if (ipv6Prefix === 64) {
    let at = -1;
    for (let group = 0; group < 4; group++) {
      at = ip.indexOf(":", at + 1);
      if (at < 0) return ip;
    }
    return `${ip.slice(0, at)}::/64`;
  }
  if (!ipaddr.IPv6.isValid(ip)) return ip;
  const bytes = ipaddr.IPv6.parse(ip).toByteArray();
  for (let bit = ipv6Prefix; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return `${ipaddr.fromByteArray(bytes).toString()}/${ipv6Prefix}`;
}
