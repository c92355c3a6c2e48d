/**
 * One JSON log line per request: level, requestId, method, path, status, durationMs.
 * Errors add their message, and their stack only outside production. Features may attach
 * extra structured fields (never secrets, tokens or passwords) with `log.set()`.
 *
 * Workers Logs indexes JSON lines, so one flat object per request is both cheap and
 * queryable.
 */
export interface LogFields {
  [key: string]: string | number | boolean | null | undefined;
}

export class Logger {
  readonly #fields: LogFields = {};
  #error: Error | undefined;

  /** Adds fields to this request's log line. */
  set(fields: LogFields) {
    Object.assign(this.#fields, fields);
  }

  /** Records the error that made this request fail (shown as message, stack outside production). */
  fail(err: Error) {
    this.#error = err;
  }

  /** Builds the line (exported for tests); `emit` prints it. */
  line(base: { requestId: string; method: string; path: string; status: number; durationMs: number }, production: boolean) {
    const level = base.status >= 500 ? 'error' : base.status >= 400 ? 'warn' : 'info';
    const line: Record<string, unknown> = { level, ...base, ...this.#fields };
    if (this.#error) {
      line.error = this.#error.message;
      if (!production && this.#error.stack) line.stack = this.#error.stack;
    }
    return line;
  }

  emit(base: Parameters<Logger['line']>[0], production: boolean) {
    const line = this.line(base, production);
    const text = JSON.stringify(line);
    if (line.level === 'error') console.error(text);
    else if (line.level === 'warn') console.warn(text);
    else console.log(text);
  }
}

/** A structured event outside the request line (audit events, conflict counters, config problems). */
export function logEvent(level: 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown> = {}) {
  const text = JSON.stringify({ level, event, ...fields });
  if (level === 'error') console.error(text);
  else if (level === 'warn') console.warn(text);
  else console.log(text);
}
