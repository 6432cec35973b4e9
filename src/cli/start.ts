// `npm start`: serve a demo data directory, creating it on first run with a
// synthetic hot lane (65,536 entries) and cold lane (1,048,576 entries).
import fs from 'node:fs';
import path from 'node:path';
import { buildGeneration } from '../store/builder.js';
import { SyntheticSource } from '../store/entries.js';
import { currentLink } from '../store/layout.js';
import { stderrProgress } from '../store/progress.js';
import { reportAndExit } from './errors.js';
import { serveCommand } from './serve.js';

const DEMO_BLOCK = 1;

async function main(): Promise<void> {
  const data = path.resolve(process.env.LANEPIR_DATA ?? './pir-data');
  if (!fs.existsSync(currentLink(data))) {
    process.stderr.write(`creating the demo data directory ${data} (hot: 65,536 entries, cold: 1,048,576 entries)\n`);
    await buildGeneration({
      data,
      block: DEMO_BLOCK,
      lanes: {
        hot: { source: new SyntheticSource('hot', 65_536, 32, DEMO_BLOCK) },
        cold: { source: new SyntheticSource('cold', 1_048_576, 32, DEMO_BLOCK) },
      },
      publish: true,
      progress: stderrProgress(),
    });
  }
  const server = await serveCommand({ data });
  const bin = path.relative(process.cwd(), path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../bin/lanepir.js')) || 'bin/lanepir.js';
  process.stderr.write(
    [
      '',
      `lanepir is serving ${data}`,
      `  public API  ${server.publicUrl}   (GET /info, /crs/:lane, /hint/:lane; POST /query/:lane)`,
      `  admin API   ${server.adminUrl}   (POST /admin/reload, GET /admin/generations)`,
      '',
      'Try a private lookup:',
      `  node ${bin} query --url ${server.publicUrl} --lane hot --index 42`,
      '',
    ].join('\n'),
  );
}

main().catch(reportAndExit);
