// Errors of the store layer: a stable `code` for callers (CLI exit messages,
// HTTP 4xx bodies) and a message that names the defect.
export class StoreError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}
