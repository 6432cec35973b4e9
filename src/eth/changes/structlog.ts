// Change source 3 (any node with debug_traceTransaction, e.g. Hardhat): a
// transaction's struct logs name what it may have written; the values are
// then read back from the node at the block (readback.ts). This module
// walks the steps and collects:
//   - storage slots written by SSTORE, attributed to the account whose
//     storage the running frame uses: CALL and STATICCALL run in the callee's
//     storage, DELEGATECALL and CALLCODE in the caller's; CREATE and CREATE2
//     run in the new contract's, whose address is known only when the frame
//     returns (the creator's stack top at its next step; a creator that
//     halts on the CREATE itself created nothing);
//   - accounts whose balance, nonce or code may change: CALL/CALLCODE
//     targets (value), creators (nonce) and created contracts, self-destructed
//     contracts and their beneficiaries.
// Reverted frames are included: a superset is harmless because every value
// is read back; a missed key is not, so nothing is skipped on a guess.

export interface StructLog {
  op: string;
  depth: number;
  /** Bottom to top; "0x…" quantities (geth) or 64 hex digits without 0x (Hardhat). */
  stack?: string[];
}

export interface Touched {
  accounts: Set<string>;
  /** Address -> slots (0x + 64 hex). */
  slots: Map<string, Set<string>>;
  /**
   * Existing accounts that ran SELFDESTRUCT (in any frame, reverted or not).
   * Before Cancun (EIP-6780) that removes the account with all its storage,
   * and it may be created again in the same block: its untouched old slots
   * must then be read back too.
   */
  destructed: Set<string>;
}

export function emptyTouched(): Touched {
  return { accounts: new Set(), slots: new Map(), destructed: new Set() };
}

export function touchAccount(t: Touched, address: string): void {
  t.accounts.add(address.toLowerCase());
}

export function touchSlot(t: Touched, address: string, slot: string): void {
  const a = address.toLowerCase();
  t.accounts.add(a);
  let s = t.slots.get(a);
  if (!s) t.slots.set(a, (s = new Set()));
  s.add(slot);
}

/** Whose storage a frame uses; a created contract's address is filled in when its frame returns. */
interface Context {
  address?: string;
  /** Slots written before the address was known. */
  pending: string[];
  /** The creator's nonce changed before the address was known. */
  touched: boolean;
}

interface Frame {
  depth: number;
  ctx: Context;
}

function stackWord(stack: string[] | undefined, fromTop: number, where: string): bigint {
  const v = stack?.[stack.length - 1 - fromTop];
  if (v === undefined) throw new Error(`${where}: the step has no stack (trace with the stack enabled)`);
  return BigInt(v.startsWith('0x') ? v : `0x${v}`);
}

const asAddress = (v: bigint) => `0x${(v & ((1n << 160n) - 1n)).toString(16).padStart(40, '0')}`;
const asWord = (v: bigint) => `0x${v.toString(16).padStart(64, '0')}`;

/**
 * Collects what one transaction may have written. `root` is the account the
 * transaction runs in: its `to`, or for a contract creation the receipt's
 * contractAddress.
 */
export function walkStructLogs(logs: readonly StructLog[], root: string, touched: Touched, where = 'trace'): void {
  const rootCtx: Context = { address: root.toLowerCase(), pending: [], touched: false };
  const frames: Frame[] = [{ depth: logs[0]?.depth ?? 1, ctx: rootCtx }];
  /**
   * CREATEs waiting for their new address, at most one per depth (deepest
   * last). A CREATE at depth d is followed by its constructor's steps at
   * d + 1 (none if it failed at once or the init code is empty), then by
   * the creator's next step at d, whose stack top is the new address (0 on
   * failure). If the creator's frame halts on the CREATE itself (write
   * protection in a static call, out of gas), the next step is shallower and
   * the CREATE never happened; a later step at d belongs to another frame.
   */
  const creates: { depth: number; index: number; ctx: Context }[] = [];

  const resolve = (ctx: Context, address: string | undefined) => {
    if (address === undefined || /^0x0{40}$/.test(address)) return; // the creation failed: nothing of it stays
    ctx.address = address;
    touchAccount(touched, address);
    for (const slot of ctx.pending) touchSlot(touched, address, slot);
    ctx.pending = [];
  };
  const write = (ctx: Context, slot: string) => {
    if (ctx.address) touchSlot(touched, ctx.address, slot);
    else ctx.pending.push(slot);
  };
  const touchCtx = (ctx: Context) => {
    if (ctx.address) touchAccount(touched, ctx.address);
    else ctx.touched = true;
  };

  for (let i = 0; i < logs.length; i++) {
    const step = logs[i]!;
    while (frames.length > 1 && frames[frames.length - 1]!.depth > step.depth) frames.pop();
    // Back at a shallower depth: the creators of deeper pending CREATEs halted on them.
    while (creates.length && creates[creates.length - 1]!.depth > step.depth) creates.pop();
    const top = creates[creates.length - 1];
    if (top && top.depth === step.depth && i > top.index) {
      creates.pop(); // the creator's next step (steps between were the constructor's, deeper)
      resolve(top.ctx, asAddress(stackWord(step.stack, 0, `${where} step ${i}`)));
    }
    const frame = frames[frames.length - 1]!;
    const at = `${where} step ${i} (${step.op})`;
    const entersFrame = (logs[i + 1]?.depth ?? -1) === step.depth + 1;
    switch (step.op) {
      case 'SSTORE':
        write(frame.ctx, asWord(stackWord(step.stack, 0, at)));
        break;
      case 'CALL':
      case 'CALLCODE': {
        const target = asAddress(stackWord(step.stack, 1, at));
        touchAccount(touched, target);
        touchCtx(frame.ctx); // the caller's balance (value sent)
        if (entersFrame) frames.push({ depth: step.depth + 1, ctx: step.op === 'CALL' ? { address: target, pending: [], touched: false } : frame.ctx });
        break;
      }
      case 'DELEGATECALL':
        if (entersFrame) frames.push({ depth: step.depth + 1, ctx: frame.ctx });
        break;
      case 'STATICCALL':
        if (entersFrame) frames.push({ depth: step.depth + 1, ctx: { address: asAddress(stackWord(step.stack, 1, at)), pending: [], touched: false } });
        break;
      case 'CREATE':
      case 'CREATE2': {
        touchCtx(frame.ctx); // the creator's nonce and balance
        const ctx: Context = { pending: [], touched: false };
        if (entersFrame) frames.push({ depth: step.depth + 1, ctx });
        creates.push({ depth: step.depth, index: i, ctx });
        break;
      }
      case 'SELFDESTRUCT':
        touchAccount(touched, asAddress(stackWord(step.stack, 0, at)));
        touchCtx(frame.ctx);
        // A contract still under construction has no address yet, and no storage from before this transaction.
        if (frame.ctx.address) touched.destructed.add(frame.ctx.address);
        break;
      default:
        break;
    }
  }
  if (rootCtx.touched && rootCtx.address) touchAccount(touched, rootCtx.address);
}
