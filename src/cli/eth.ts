// lanepir account | storage | erc20: private reads of Ethereum state over
// HTTP (src/eth/client.ts), with hints cached on disk like lanepir query.
import path from 'node:path';
import { formatEther } from 'viem';
import { type StateClientOptions, type StateResult, StateClient } from '../eth/client.js';
import { EthError } from '../eth/errors.js';
import { parseAddress, parseWord } from '../eth/keys.js';
import { UsageError, intOption } from './errors.js';
import { defaultCacheDir, fileCache } from './query.js';

export interface EthReadFlags {
  url: string;
  cacheDir?: string;
  /** commander's --no-hide-lanes */
  hideLanes?: boolean;
  padTo?: string;
  block?: string;
  json?: boolean;
  slot?: string;
  layout?: string;
}

function clientOf(flags: EthReadFlags): StateClient {
  let url: URL;
  try {
    url = new URL(flags.url);
  } catch {
    throw new UsageError(`--url is not a URL: ${flags.url}`);
  }
  const cacheDir = path.join(flags.cacheDir ?? defaultCacheDir(), url.host.replace(/[^\w.-]/g, '_'));
  const opts: StateClientOptions = {
    url: url.toString(),
    cache: fileCache(cacheDir),
    hideLanes: flags.hideLanes !== false,
    ...(flags.padTo !== undefined ? { padTo: intOption('--pad-to', flags.padTo, 1)! } : {}),
  };
  return new StateClient(opts);
}

/** Input errors are usage errors (exit 2), checked before anything is sent. */
function checked<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof EthError) throw new UsageError(err.message);
    throw err;
  }
}

function readOptions(flags: EthReadFlags) {
  return flags.block !== undefined ? { block: BigInt(intOption('--block', flags.block)!) } : {};
}

function print(flags: EthReadFlags, client: StateClient, r: StateResult): void {
  const block = `${r.block.number}${r.block.hash ? ` (${r.block.hash})` : ''}`;
  if (flags.json) {
    process.stdout.write(JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
  } else if (r.kind === 'account') {
    process.stdout.write(
      [
        `address    ${r.address}`,
        `balance    ${r.balance} wei (${formatEther(r.balance)} ETH)`,
        `nonce      ${r.nonce}`,
        `code size  ${r.codeSize}`,
        `exists     ${r.exists}`,
        `block      ${block}`,
      ].join('\n') + '\n',
    );
  } else if (r.kind === 'storage') {
    process.stdout.write([`address    ${r.address}`, `slot       ${r.slot}`, `value      ${r.value}`, `exists     ${r.exists}`, `block      ${block}`].join('\n') + '\n');
  } else {
    process.stdout.write(
      [`token      ${r.token}`, `holder     ${r.holder}`, `balance    ${r.balance}`, `slot       ${r.slot}`, `exists     ${r.exists}`, `block      ${block}`].join('\n') + '\n',
    );
  }
  const s = client.lastRound;
  if (s) {
    const queries = Object.entries(s.queries).map(([l, n]) => `${l} ${n}`).join(', ');
    process.stderr.write(
      `private read from generation ${s.generation}: ${queries} queries; sent ${s.bytesSent} B, received ${s.bytesReceived} B; ${Object.entries(s.timings).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(', ')}\n`,
    );
  }
}

export async function accountCommand(address: string, flags: EthReadFlags): Promise<void> {
  const a = checked(() => parseAddress(address, 'ADDRESS'));
  const client = clientOf(flags);
  print(flags, client, await client.getAccount(a, readOptions(flags)));
}

export async function storageCommand(address: string, slot: string, flags: EthReadFlags): Promise<void> {
  const a = checked(() => parseAddress(address, 'ADDRESS'));
  checked(() => parseWord(slot, 'SLOT'));
  const client = clientOf(flags);
  print(flags, client, await client.getStorageAt(a, slot, readOptions(flags)));
}

export async function erc20Command(token: string, holder: string, flags: EthReadFlags): Promise<void> {
  const t = checked(() => parseAddress(token, 'TOKEN'));
  const h = checked(() => parseAddress(holder, 'HOLDER'));
  if (flags.layout !== undefined && flags.layout !== 'solidity' && flags.layout !== 'vyper') throw new UsageError('--layout must be solidity or vyper');
  if (flags.layout !== undefined && flags.slot === undefined) throw new UsageError('--layout needs --slot (the balance mapping\'s slot)');
  if (flags.slot !== undefined) checked(() => parseWord(flags.slot, '--slot'));
  const client = clientOf(flags);
  const r = await client.getErc20Balance(t, h, {
    ...readOptions(flags),
    ...(flags.slot !== undefined ? { balanceSlot: flags.slot } : {}),
    ...(flags.layout !== undefined ? { layout: flags.layout as 'solidity' | 'vyper' } : {}),
  });
  print(flags, client, r);
}
