// lanepir/client: everything a wallet imports (browser-safe). The PIR client
// and keyword reader (src/pir/), and the Ethereum state client and EIP-1193
// provider (src/eth/).
export * from './pir/index.js';
export {
  StateClient,
  type StateClientOptions,
  type StateRead,
  type StateResult,
  type AccountResult,
  type StorageResult,
  type Erc20Result,
  type BlockRef,
  type ReadOptions,
  type RoundStats,
} from './eth/client.js';
export { createLanepirProvider, ProviderRpcError, balanceOfCall, type LanepirProvider, type LanepirProviderOptions, type Eip1193Like } from './eth/provider.js';
export { HotManifest, type HotContract, type EthLane } from './eth/hot-manifest.js';
export { accountKey, storageKey, parseAddress } from './eth/keys.js';
export { encodeBasicData, decodeBasicData, type BasicData } from './eth/values.js';
export { erc20BalanceSlot, type Erc20Layout } from './eth/erc20.js';
export { EthError } from './eth/errors.js';
