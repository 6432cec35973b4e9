// The EIP-1193 error, on its own so that code needing only the class (the
// browser page's side of the worker) does not load the provider and viem.

/** An EIP-1193 error (`code` per EIP-1193 / JSON-RPC). */
export class ProviderRpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'ProviderRpcError';
  }
}
