/** A blob's MIME type as storage accepts it: checked on presign and commit, and by the importer (src/archive/). */
import * as z from 'zod';

/** type/subtype with optional parameters: nothing that could break a header. */
export const mimeType = z
  .string()
  .max(255)
  .regex(/^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+(\s*;\s*[a-z0-9!#$&^_.+-]+=[a-z0-9!#$&^_.+-]+)*$/i, 'must be a MIME type like image/png');
