/**
 * Where a webhook may point (docs/webhooks.md "Outbound safety"). In production only `https`
 * URLs on public hosts: no IP literal in a private, loopback, link-local, shared or reserved
 * range, no `localhost`-style names, no credentials in the URL. Names that resolve to such
 * addresses are not reachable from Cloudflare's network anyway. With OR3_WEBHOOK_ALLOW_LOOPBACK
 * (development only; config.ts refuses it in production) `http(s)://127.0.0.1:<port>` and
 * `http(s)://localhost:<port>` are allowed too, for local receivers and tests.
 *
 * Checked when a hook is saved and again before every delivery.
 */
const MAX_URL_LENGTH = 2048;

/** IPv4 ranges that are not public (RFC 6890 and friends). */
const PRIVATE_V4: [number, number][] = [
  [0x00000000, 8], // "this" network
  [0x0a000000, 8], // 10/8
  [0x64400000, 10], // 100.64/10 shared address space
  [0x7f000000, 8], // loopback
  [0xa9fe0000, 16], // link-local
  [0xac100000, 12], // 172.16/12
  [0xc0000000, 24], // 192.0.0/24 protocol assignments
  [0xc0000200, 24], // TEST-NET-1
  [0xc0a80000, 16], // 192.168/16
  [0xc6120000, 15], // 198.18/15 benchmarking
  [0xc6336400, 24], // TEST-NET-2
  [0xcb007100, 24], // TEST-NET-3
  [0xe0000000, 3], // multicast and reserved (224/4, 240/4)
];

function parseV4(host: string): number | null {
  const parts = host.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return null;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

const inRange = (ip: number, [base, bits]: [number, number]) => bits === 0 || ip >>> (32 - bits) === base >>> (32 - bits);

/** Whether an IPv6 literal (without brackets, as URL gives it) is not public. */
function privateV6(host: string): boolean {
  const h = host.toLowerCase();
  if (h === '::' || h === '::1') return true;
  // IPv4-mapped or -compatible: judge the embedded address (URL writes it in hex: ::ffff:7f00:1).
  const mapped = /^::(?:ffff:)?([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(h);
  if (mapped) {
    const ip = ((parseInt(mapped[1]!, 16) << 16) >>> 0) + parseInt(mapped[2]!, 16);
    return PRIVATE_V4.some((r) => inRange(ip, r));
  }
  if (h.startsWith('::ffff:')) return true;
  const first = parseInt(h.split(':')[0] || '0', 16);
  return (
    (first & 0xfe00) === 0xfc00 || // fc00::/7 unique local
    (first & 0xffc0) === 0xfe80 || // fe80::/10 link-local
    (first & 0xff00) === 0xff00 || // multicast
    h.startsWith('64:ff9b:') || // NAT64 (embeds IPv4)
    h.startsWith('2001:db8:') || // documentation
    h.startsWith('2002:') // 6to4 (embeds IPv4)
  );
}

const LOCAL_NAMES = /(^|\.)(localhost|local|internal|localdomain|home\.arpa)$/i;

/** Why `raw` may not be a webhook's target, or null when it may. */
export function targetProblem(raw: string, allowLoopback: boolean): string | null {
  if (raw.length > MAX_URL_LENGTH) return `url is longer than ${MAX_URL_LENGTH} characters`;
  const url = URL.parse(raw);
  if (!url) return 'url is not a valid URL';
  if (url.username || url.password) return 'url must not carry credentials';
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (allowLoopback && (host === '127.0.0.1' || host === 'localhost') && (url.protocol === 'http:' || url.protocol === 'https:')) return null;
  if (url.protocol !== 'https:') return 'url must use https';
  const v4 = parseV4(host);
  if (v4 !== null) return PRIVATE_V4.some((r) => inRange(v4, r)) ? 'url points at a private, loopback or reserved address' : null;
  if (host.includes(':')) return privateV6(host) ? 'url points at a private, loopback or reserved address' : null;
  if (!host.includes('.') || LOCAL_NAMES.test(host)) return 'url must name a public host';
  return null;
}
