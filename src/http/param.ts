/** Path parameters (ids in `/api/…/:id`), validated the way bodies are: 1–128 characters, or 400 `invalid_param`. */
import * as z from 'zod';
import { badRequest } from '../errors';

const id = z.string().min(1).max(128);

/** Validates a path parameter the same way bodies are validated. */
export function param(value: string | undefined, what: string): string {
  const parsed = id.safeParse(value);
  if (!parsed.success) throw badRequest(`Invalid ${what}`, 'invalid_param');
  return parsed.data;
}
