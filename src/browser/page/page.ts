// The lookup page served at GET /: a form, a worker running the lanepir
// client, and what each lookup returned and cost. The main thread only
// renders; reading state privately happens in the worker (LanepirWorker).
// GET /?address=0x…[&token=0x…][&slot=…] looks the address up on load.
// The account's result goes into [data-testid=result] as JSON
// {"address","balance","nonce","block_number","block_hash","exists"}
// (quantities as decimal strings); errors into [data-testid=error].
// Only the worker's page side is bundled into page.js (a few KiB): the client
// bundle itself (lanepir-client.js) is loaded by the worker, off this thread.
import { type RoundStats, type StateRead, type StateResult } from '../../eth/client.js';
import { type CallReport } from '../protocol.js';
import { type PageToken } from '../state-session.js';
import { LanepirWorker } from '../worker-client.js';

/** What the cost table shows: the round's stats and the call's report. */
interface PageRound extends RoundStats {
  blockNumber: string;
  hideLanes: boolean;
  workerMs: number;
  hintBytes: number;
  deltaBytes: number;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

let worker: Promise<LanepirWorker> | undefined;
let busy = false;

function setState(state: 'loading' | 'idle' | 'busy' | 'done' | 'error'): void {
  document.body.dataset.state = state;
}

function show(id: string, on = true): void {
  $(id).hidden = !on;
}

function text(id: string, value: string): void {
  $(id).textContent = value;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function ms(n: number | undefined): string {
  return n === undefined ? '–' : `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`;
}

/** 1234500000000000000 wei -> "1.2345". */
function formatUnits(value: bigint, decimals = 18): string {
  const negative = value < 0n;
  const v = negative ? -value : value;
  const base = 10n ** BigInt(decimals);
  const whole = v / base;
  const frac = (v % base).toString().padStart(decimals, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${frac ? `.${frac}` : ''}`;
}

function showError(err: unknown): void {
  const e = err as { message?: unknown; code?: unknown };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const box = $('error');
  box.textContent = code ? `${message} [${code}]` : message;
  box.dataset.code = code ?? '';
  box.hidden = false;
  text('status', 'The lookup failed: nothing was shown that was not checked.');
  setState('error');
}

function startWorker(): Promise<LanepirWorker> {
  worker ??= LanepirWorker.start({ url: location.origin }).catch((err: unknown) => {
    worker = undefined;
    throw err;
  });
  return worker;
}

function readForm(): { address: string; token: string; slot: string } {
  const form = $<HTMLFormElement>('lookup');
  const get = (name: string) => ((form.elements.namedItem(name) as HTMLInputElement).value ?? '').trim();
  return { address: get('address'), token: get('token'), slot: get('slot') };
}

/** What one lookup reads: the account, then a token balance (one, or each token the server lists), then a slot. */
function planReads(address: string, token: string, slot: string, listed: PageToken[]): StateRead[] {
  const reads: StateRead[] = [{ kind: 'account', address }];
  if (token !== '') reads.push({ kind: 'erc20', token, holder: address, ...(slot !== '' ? { balanceSlot: slot } : {}) });
  else for (const t of listed) reads.push({ kind: 'erc20', token: t.address, holder: address });
  if (slot !== '' && token === '') reads.push({ kind: 'storage', address, slot });
  return reads;
}

function render(results: StateResult[], round: PageRound, wallMs: number, labels: Map<string, string>): void {
  const account = results.find((r) => r.kind === 'account');
  if (account && account.kind === 'account') {
    const json = {
      address: account.address,
      balance: account.balance.toString(),
      nonce: account.nonce.toString(),
      block_number: account.block.number.toString(),
      block_hash: account.block.hash,
      exists: account.exists,
    };
    text('result', JSON.stringify(json));
    text('acct-address', account.address);
    text('acct-eth', formatUnits(account.balance));
    text('acct-wei', `(${account.balance} wei)`);
    text('acct-nonce', account.nonce.toString());
    text('acct-exists', account.exists ? 'yes' : 'no: the state has no such account (it reads as zero, as Ethereum does)');
    text('acct-block', `#${account.block.number}`);
    text('acct-hash', account.block.hash ?? '(hash not published)');
    show('account');
  }

  const tokens = results.filter((r) => r.kind === 'erc20');
  const rows = $('token-rows');
  rows.replaceChildren();
  for (const t of tokens) {
    if (t.kind !== 'erc20') continue;
    const tr = document.createElement('tr');
    const label = labels.get(t.token.toLowerCase());
    for (const cell of [label ? `${label} ${t.token}` : t.token, `${t.balance}${t.exists ? '' : ' (no entry: 0)'}`, t.slot]) {
      const td = document.createElement('td');
      td.textContent = cell;
      tr.append(td);
    }
    rows.append(tr);
  }
  text(
    'tokens-json',
    JSON.stringify(tokens.map((t) => (t.kind === 'erc20' ? { token: t.token, label: labels.get(t.token.toLowerCase()) ?? null, holder: t.holder, balance: t.balance.toString(), slot: t.slot, exists: t.exists } : null))),
  );
  show('tokens', tokens.length > 0);

  const storage = results.find((r) => r.kind === 'storage');
  if (storage && storage.kind === 'storage') {
    text('storage-slot', storage.slot);
    text('storage-value', `${storage.value}${storage.exists ? '' : ' (no entry: 0)'}`);
    text('storage-json', JSON.stringify({ address: storage.address, slot: storage.slot, value: storage.value, exists: storage.exists }));
  }
  show('storage', storage !== undefined);

  const lanes = Object.entries(round.queries)
    .map(([lane, n]) => `${lane}: ${n} quer${n === 1 ? 'y' : 'ies'}`)
    .join(', ');
  text('cost-lanes', `${lanes}${round.hideLanes ? ' (lane hiding: every lane gets the same queries whatever you look up)' : ' (lane hiding off)'}`);
  text('cost-sent', `${bytes(round.bytesSent)} in ${Object.values(round.queries).reduce((a, b) => a + b, 0)} queries`);
  text('cost-received', bytes(round.bytesReceived));
  const sources = Object.entries(round.hintSources)
    .map(([lane, s]) => `${lane}: ${s}`)
    .join(', ');
  text('cost-hints', `${sources}; ${bytes(round.hintBytes)} of hints and ${bytes(round.deltaBytes)} of deltas downloaded`);
  const t = round.timings;
  text(
    'cost-time',
    `hint ${ms(t.hint)} · query ${ms(t.query)} · network ${ms(t.network)} · decode ${ms(t.decode)} · manifest ${ms(t.manifest)}; ${ms(round.workerMs)} in the worker, ${ms(wallMs)} on this page`,
  );
  text(
    'cost-json',
    JSON.stringify({
      generation: round.generation,
      block_number: round.blockNumber,
      queries: round.queries,
      hide_lanes: round.hideLanes,
      bytes_sent: round.bytesSent,
      bytes_received: round.bytesReceived,
      hint_sources: round.hintSources,
      hint_bytes: round.hintBytes,
      delta_bytes: round.deltaBytes,
      timings_ms: { ...t, worker: round.workerMs, page: wallMs },
    }),
  );
  show('cost');

  const tr = document.createElement('tr');
  for (const cell of [account?.kind === 'account' ? account.address : '', `#${round.blockNumber}`, bytes(round.bytesSent), bytes(round.bytesReceived), sources, ms(wallMs)]) {
    const td = document.createElement('td');
    td.textContent = cell;
    tr.append(td);
  }
  $('history').prepend(tr);
  show('history-section');
}

function pageRound(results: StateResult[], report: CallReport): PageRound {
  if (!report.round) throw new Error('the worker reported no round for the reads');
  return {
    ...report.round,
    blockNumber: results[0]!.block.number.toString(),
    // With hiding every lane the server serves is queried (the worker's default, never turned off here).
    hideLanes: true,
    workerMs: report.ms,
    hintBytes: report.hintBytes,
    deltaBytes: report.deltaBytes,
  };
}

async function lookup(): Promise<void> {
  if (busy) return;
  const { address, token, slot } = readForm();
  $('error').hidden = true;
  if (address === '') {
    showError(new Error('enter an address (0x followed by 40 hex digits)'));
    return;
  }
  busy = true;
  $<HTMLButtonElement>('submit').disabled = true;
  setState('busy');
  text('status', 'Looking up privately…');
  const started = performance.now();
  try {
    const client = await startWorker();
    const listed = token === '' ? (await client.tokens()).value : [];
    const labels = new Map(listed.flatMap((t) => (t.label ? [[t.address.toLowerCase(), t.label] as const] : [])));
    const { value, report } = await client.readMany(planReads(address, token, slot, listed));
    const round = pageRound(value, report);
    render(value, round, performance.now() - started, labels);
    text('status', `Read privately from block #${round.blockNumber}.`);
    setState('done');
  } catch (err) {
    showError(err);
  } finally {
    busy = false;
    $<HTMLButtonElement>('submit').disabled = false;
  }
}

function init(): void {
  const form = $<HTMLFormElement>('lookup');
  const params = new URLSearchParams(location.search);
  for (const name of ['address', 'token', 'slot']) {
    const v = params.get(name);
    if (v !== null) (form.elements.namedItem(name) as HTMLInputElement).value = v;
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const { address, token, slot } = readForm();
    const q = new URLSearchParams({ address, ...(token ? { token } : {}), ...(slot ? { slot } : {}) });
    history.replaceState(null, '', `?${q}`);
    void lookup();
  });
  if (params.get('address')) void lookup();
  else {
    setState('idle');
    text('status', 'Starting the client…');
    startWorker().then(
      () => {
        if (!busy) text('status', 'Ready. Enter an address.');
      },
      (err: unknown) => showError(err),
    );
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
