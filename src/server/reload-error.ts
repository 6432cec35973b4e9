// A generation refused by a reload (HTTP 422 with the code); the old one keeps serving.
import { StoreError } from '../store/errors.js';

export class ReloadError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ReloadError';
  }
}

/** The reload's callers all went away before it switched anything. */
export const abandonedError = () => new ReloadError('EABANDONED', 'the reload was abandoned by its caller(s) before it switched; nothing changed');

/** Any coded failure (store, addon, time limit) as a ReloadError; other errors unchanged. */
export function rethrow(err: unknown): never {
  if (err instanceof ReloadError) throw err;
  const e = err as { code?: unknown; message?: string };
  if (err instanceof StoreError || typeof e?.code === 'string') {
    throw new ReloadError(String(e.code), e.message ?? String(err));
  }
  throw err;
}
