// The Ethereum files of a generation, read back with their checksums checked
// against the generation's manifest (never serve or use a file that is not
// what the builder listed). Node only.
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { type Manifest } from '../store/manifest.js';
import { EthError } from './errors.js';
import { HOT_MANIFEST_FILE, HotManifest, MAX_HOT_MANIFEST_BYTES } from './hot-manifest.js';

/** True when the generation is an Ethereum one (it carries a hot manifest). */
export function isEthGeneration(manifest: Manifest): boolean {
  return HOT_MANIFEST_FILE in manifest.files;
}

/** The generation's hot manifest: its bytes (exactly as listed) and parsed form. */
export async function readHotManifest(genDir: string, manifest: Manifest): Promise<{ bytes: Buffer; manifest: HotManifest; sha256: string }> {
  const listed = manifest.files[HOT_MANIFEST_FILE];
  if (!listed) throw new EthError('ENO_HOT_MANIFEST', `generation ${manifest.generation} has no ${HOT_MANIFEST_FILE} (it was not built from Ethereum state)`);
  if (listed.size > MAX_HOT_MANIFEST_BYTES) throw new EthError('EHOT_MANIFEST', `${HOT_MANIFEST_FILE} of generation ${manifest.generation} is larger than ${MAX_HOT_MANIFEST_BYTES} bytes`);
  const file = path.join(genDir, HOT_MANIFEST_FILE);
  const fh = await fsp.open(file, 'r');
  let bytes: Buffer;
  try {
    // Read at most one byte more than listed: a file that grew is caught without reading all of it.
    const buf = Buffer.alloc(listed.size + 1);
    let got = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got === buf.length) break;
    }
    bytes = buf.subarray(0, got);
  } finally {
    await fh.close();
  }
  const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
  if (bytes.length !== listed.size || sha256 !== listed.sha256) {
    throw new EthError('EHOT_MANIFEST', `${HOT_MANIFEST_FILE} of generation ${manifest.generation} does not match its manifest entry (size or sha256)`);
  }
  return { bytes, manifest: HotManifest.parse(bytes.toString('utf8'), `${HOT_MANIFEST_FILE} of generation ${manifest.generation}`), sha256 };
}
