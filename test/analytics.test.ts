/** Optional Workers Analytics Engine points (src/http/analytics.ts, docs/operations.md "Metrics"). */
import { describe, expect, it } from 'vitest';
import { api, apiWithEnv } from './helpers';
import { signedInUser } from './auth/helpers';

/** Stands in for the platform's dataset binding (not one of our components): it records what the Worker writes. */
function dataset() {
  const points: AnalyticsEngineDataPoint[] = [];
  return { points, binding: { writeDataPoint: (p?: AnalyticsEngineDataPoint) => void (p && points.push(p)) } };
}

describe('Analytics Engine', () => {
  it('writes one point per request with the route pattern (no ids), method, status and duration', async () => {
    const user = await signedInUser();
    const { points, binding } = dataset();
    const workspaceId = crypto.randomUUID();
    const res = await apiWithEnv({ ANALYTICS: binding }, `/api/workspaces/${workspaceId}/members`, { headers: user.headers });
    expect(res.status).toBe(403);
    expect(await apiWithEnv({ ANALYTICS: binding }, '/api/health')).toHaveProperty('status', 200);
    expect(await apiWithEnv({ ANALYTICS: binding }, '/api/no-such-route')).toHaveProperty('status', 404);
    expect(points).toHaveLength(3);
    expect(points[0]).toMatchObject({ blobs: ['/api/workspaces/:id/members', 'GET', '4xx'], indexes: ['/api/workspaces/:id/members'] });
    expect(points[0]!.doubles![0]).toBe(403);
    expect(points[0]!.doubles![1]).toBeGreaterThanOrEqual(0);
    expect(points[0]!.doubles![2]).toBe(0);
    expect(JSON.stringify(points)).not.toContain(workspaceId);
    expect(points[1]).toMatchObject({ blobs: ['/api/health', 'GET', '2xx'] });
    expect(points[2]!.blobs![2]).toBe('4xx');
  });

  it('a failing dataset never fails the request; without the binding nothing is written', async () => {
    const broken = {
      writeDataPoint: () => {
        throw new Error('analytics down');
      },
    };
    expect((await apiWithEnv({ ANALYTICS: broken }, '/api/health')).status).toBe(200);
    expect((await api('/api/health')).status).toBe(200);
  });
});
