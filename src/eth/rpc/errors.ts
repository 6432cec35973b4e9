// Errors of the JSON-RPC block source: a stable `code` for the CLI and the
// follower's retry decisions, and a message that names the node and method.
export class RpcError extends Error {
  constructor(
    /**
     * EUNREACHABLE: transport failure (connection refused, timeout, HTTP 5xx):
     *   retried; the follower waits for the node to come back.
     * EUNSUPPORTED: the node does not offer the method (never retried).
     * ERPC: the node answered with a JSON-RPC error.
     * EBAD_RESPONSE: the node answered something that is not what the method returns.
     * ENO_CHANGE_SOURCE: the node offers no way to learn a block's state changes.
     * EREORG: the block asked about is no longer the node's block at that height.
     * ETOO_LARGE: an HTTP answer over the response size limit (asking again cannot help).
     */
    readonly code: 'EUNREACHABLE' | 'EUNSUPPORTED' | 'ERPC' | 'EBAD_RESPONSE' | 'ENO_CHANGE_SOURCE' | 'EREORG' | 'ECHAIN' | 'ETOO_LARGE',
    message: string,
    readonly rpcCode?: number,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}
