// Errors of the Ethereum layer: a stable `code` (CLI messages, HTTP bodies,
// EIP-1193 errors map from it) and a message that names the bad input.
export class EthError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'EthError';
  }
}
