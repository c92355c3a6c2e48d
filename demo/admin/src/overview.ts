/** The console's overview (docs/admin.md "Overview"): deep health, counts, today's numbers and the last 24 hours as small charts. */
import { h } from '../../src/dom';
import { barChart, hourLabel, HOUR_MS, lastBuckets, seriesOf } from './chart';
import { api, formatBytes } from './ui';

const CARDS: [string, string, boolean?][] = [
  ['or3_users_total', 'users'],
  ['or3_users_disabled', 'disabled users'],
  ['or3_workspaces_total', 'workspaces'],
  ['or3_sync_ops_pushed_today', 'ops pushed today'],
  ['or3_sync_ops_pulled_today', 'ops pulled today'],
  ['or3_sync_bytes_in_today', 'bytes in today', true],
  ['or3_sync_bytes_out_today', 'bytes out today', true],
  ['or3_sync_peak_sockets_today', 'most sockets at once today'],
  ['or3_sync_peak_presence_today', 'largest presence roster today'],
];

const CHARTS: [string, string][] = [
  ['ops_pushed', 'Ops pushed per hour'],
  ['ops_pulled', 'Ops pulled per hour'],
  ['bytes_in', 'Bytes in per hour'],
  ['peak_sockets', 'Most sockets at once per hour'],
];

export async function overview(): Promise<Node> {
  // One roll-up at a time: each asks every recently active workspace object.
  const metrics = await api('GET', '/api/admin/metrics');
  const [series, health] = await Promise.all([
    api('GET', '/api/admin/metrics/series'),
    api('GET', '/api/health?deep=true').catch(() => ({ status: 'unreachable' })),
  ]);
  const refused = Object.entries(metrics as Record<string, number>)
    .filter(([k, v]) => k.startsWith('or3_sync_refused_') && k.endsWith('_today') && v > 0)
    .map(([k, v]) => `${k.slice('or3_sync_refused_'.length, -'_today'.length)}: ${v}`);
  const hours = lastBuckets(24, HOUR_MS);
  return h(
    'div',
    {},
    h('p', { 'data-testid': 'health' }, `Health: ${health.status}`),
    h(
      'div',
      { class: 'cards' },
      ...CARDS.map(([k, label, bytes]) =>
        h('div', { class: 'card', 'data-metric': k }, h('b', {}, bytes ? formatBytes(metrics[k] ?? 0) : String(metrics[k] ?? 0)), label),
      ),
    ),
    h('p', {}, refused.length ? `Refused today: ${refused.join(', ')}` : 'No sync requests refused today.'),
    h('h2', {}, 'Last 24 hours'),
    h('div', { class: 'charts' }, ...CHARTS.map(([name, title]) => barChart(title, seriesOf(series.hours, hours, name, hourLabel), `chart-${name}`))),
    h('p', { class: 'hint' }, `Counted from ${series.workspacesCounted} workspace(s) of ${metrics.or3_workspaces_total}.`),
  );
}
