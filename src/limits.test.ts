import { describe, expect, it } from 'vitest';
import { LIMITS, PLATFORM } from './limits';

describe('limits', () => {
  it('lets a full 2 MiB push through the JSON body cap, and stays under the RPC limit', () => {
    expect(LIMITS.jsonBodyBytes).toBeGreaterThan(2 * 1024 * 1024);
    expect(LIMITS.jsonBodyBytes).toBeLessThan(PLATFORM.rpcBytes);
  });
});
