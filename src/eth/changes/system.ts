// State a block changes outside its transactions, which no transaction trace
// shows: the fee recipient (rewards), withdrawals (EIP-4895 balance credits)
// and the system contracts the client calls at the start or end of a block.
// Every change source adds these keys, and their values are read back.
import { type BlockHeader, type EthRpc, blockParam } from '../rpc/client.js';
import { type Touched, touchAccount, touchSlot } from './structlog.js';

const RING = 8191n;
const slot = (n: bigint) => `0x${n.toString(16).padStart(64, '0')}`;

/** System contracts and the slots a block's system call writes (when the contract has code at that block). */
export const SYSTEM_CONTRACTS: { eip: string; address: string; slots: (b: BlockHeader) => string[] }[] = [
  {
    // EIP-4788 beacon roots: timestamp and root at timestamp % 8191 (and + 8191).
    eip: 'EIP-4788',
    address: '0x000f3df6d732807ef1319fb7b8bb8522d0beac02',
    slots: (b) => (b.parentBeaconBlockRoot ? [slot(BigInt(b.timestamp) % RING), slot((BigInt(b.timestamp) % RING) + RING)] : []),
  },
  {
    // EIP-2935 block hashes: the parent's hash at (number - 1) % 8191.
    eip: 'EIP-2935',
    address: '0x0000f90827f1c53a10cb7a02335b175320002935',
    slots: (b) => (b.number > 0 ? [slot(BigInt(b.number - 1) % RING)] : []),
  },
  {
    // EIP-7002 withdrawal requests: excess, count, queue head and tail (dequeued at the end of the block).
    eip: 'EIP-7002',
    address: '0x00000961ef480eb55e80d19ad83579a64c007002',
    slots: () => [slot(0n), slot(1n), slot(2n), slot(3n)],
  },
  {
    // EIP-7251 consolidation requests: the same layout.
    eip: 'EIP-7251',
    address: '0x0000bbddc7ce488642fb579f8b00f3a590007251',
    slots: () => [slot(0n), slot(1n), slot(2n), slot(3n)],
  },
];

/** Adds the keys a block changes outside its transactions; returns the system contracts that have code at the block. */
export async function touchBlockExtras(rpc: EthRpc, block: BlockHeader, touched: Touched): Promise<string[]> {
  touchAccount(touched, block.miner);
  for (const w of block.withdrawals) touchAccount(touched, w);
  const codes = await rpc.many<string>(SYSTEM_CONTRACTS.map((c) => ({ method: 'eth_getCode', params: [c.address, blockParam({ blockHash: block.hash })] })));
  const active: string[] = [];
  SYSTEM_CONTRACTS.forEach((c, i) => {
    if (typeof codes[i] !== 'string' || codes[i] === '0x') return;
    active.push(c.eip);
    for (const s of c.slots(block)) touchSlot(touched, c.address, s);
  });
  return active;
}
