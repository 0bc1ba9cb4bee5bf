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
