import { describe, expect, it } from 'vitest';
import { LIMITS, PLATFORM, rowsPerInsert } from './limits';

describe('limits', () => {
  it('derives multi-row insert sizes from the 100 bound-parameter limit', () => {
    expect(rowsPerInsert(1)).toBe(100);
    expect(rowsPerInsert(12)).toBe(8);
    expect(rowsPerInsert(100)).toBe(1);
    for (let columns = 1; columns <= PLATFORM.sqlBoundParameters; columns++) {
      expect(rowsPerInsert(columns) * columns).toBeLessThanOrEqual(PLATFORM.sqlBoundParameters);
    }
    expect(() => rowsPerInsert(0)).toThrow(RangeError);
    expect(() => rowsPerInsert(101)).toThrow(RangeError);
  });

  it('lets a full 2 MiB push through the JSON body cap, and stays under the RPC limit', () => {
    expect(LIMITS.jsonBodyBytes).toBeGreaterThan(2 * 1024 * 1024);
    expect(LIMITS.jsonBodyBytes).toBeLessThan(PLATFORM.rpcBytes);
  });
});
