// `npm start`: serve a demo data directory, creating it on first run from a
// synthetic Ethereum state (src/eth/synthetic.ts): 100,000 accounts, 13
// tokens in the hot manifest, other contracts' storage, about 380,000 keys.
import fs from 'node:fs';
import path from 'node:path';
import { getAddress } from 'viem';
import { buildEthState } from '../eth/build.js';
import { isEthGeneration } from '../eth/generation-files.js';
import { DEFAULT_SYNTHETIC_SEED, EthSynthetic } from '../eth/synthetic.js';
import { resolveGeneration } from '../store/generation.js';
import { currentLink } from '../store/layout.js';
import { readManifest } from '../store/manifest.js';
import { stderrProgress } from '../store/progress.js';
import { reportAndExit } from './errors.js';
import { serveCommand } from './serve.js';

const DEMO_BLOCK = 1;
const DEMO_ACCOUNTS = 100_000;
/** Written next to the generations: what the demo was made from, so the hints name real accounts. */
const DEMO_FILE = 'eth-demo.json';

async function main(): Promise<void> {
  const data = path.resolve(process.env.LANEPIR_DATA ?? './pir-data');
  if (!fs.existsSync(currentLink(data))) {
    const syn = new EthSynthetic(DEMO_ACCOUNTS, DEFAULT_SYNTHETIC_SEED);
    process.stderr.write(`creating the demo data directory ${data}: a synthetic Ethereum state of ${DEMO_ACCOUNTS.toLocaleString('en')} accounts (~${syn.approximateKeys.toLocaleString('en')} keys)\n`);
    await buildEthState({ data, block: DEMO_BLOCK, state: syn.state(), hotManifest: syn.hotManifest, chainId: 1337, publish: true, progress: stderrProgress() });
    fs.writeFileSync(path.join(data, DEMO_FILE), JSON.stringify({ accounts: DEMO_ACCOUNTS, seed: DEFAULT_SYNTHETIC_SEED }) + '\n');
  }
  const server = await serveCommand({ data });
  const bin = path.relative(process.cwd(), path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../bin/lanepir.js')) || 'bin/lanepir.js';
  const url = server.publicUrl;
  const lines = ['', `lanepir is serving ${data}`, `  public API  ${url}   (GET /info, /manifest, /crs/:lane, /hint/:lane; POST /query/:lane)`, `  admin API   ${server.adminUrl}   (POST /admin/reload, GET /admin/generations)`, ''];
  lines.push(...(await demoHints(data, `node ${bin}`, url)));
  process.stderr.write(lines.join('\n') + '\n');
}

/** Ready-to-paste private reads of accounts and balances that exist in the served data. */
async function demoHints(data: string, cli: string, url: string): Promise<string[]> {
  const manifest = await resolveGeneration(data).then((g) => readManifest(g.dir)).catch(() => undefined);
  if (!manifest || !isEthGeneration(manifest)) {
    return ['Try a private lookup:', `  ${cli} query --url ${url} --lane hot --index 42`, ''];
  }
  let demo: { accounts: number; seed: string } | undefined;
  try {
    demo = JSON.parse(fs.readFileSync(path.join(data, DEMO_FILE), 'utf8'));
  } catch {
    demo = undefined;
  }
  if (!demo) return ['Try a private read (any address):', `  ${cli} account --url ${url} 0x0000000000000000000000000000000000000001`, ''];
  const syn = new EthSynthetic(demo.accounts, demo.seed);
  const holder = getAddress(syn.holderOf(0).address);
  const token = syn.tokens[0]!;
  return [
    'Try private reads (the server does not learn which account or token you ask for):',
    `  ${cli} account --url ${url} ${holder}`,
    `  ${cli} erc20 --url ${url} ${getAddress(token.address)} ${holder}     # ${token.label}`,
    `  ${cli} storage --url ${url} ${getAddress(token.address)} 0x${Buffer.from(syn.balanceSlot(0, holder)).toString('hex')}     # the same balance, by slot`,
    '',
  ];
}

main().catch(reportAndExit);
