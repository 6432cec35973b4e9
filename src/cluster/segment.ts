// Naming of the shared control segment: one per data directory and public
// port, so two servers on one machine never share or collide.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { type Config } from '../config.js';

export function segmentName(config: Pick<Config, 'data_dir' | 'port'>): string {
  let dir = config.data_dir;
  try {
    dir = fs.realpathSync(dir);
  } catch {
    // not created yet: the resolved path is as good
  }
  const hash = crypto.createHash('sha256').update(`${dir}\0${config.port}`).digest('hex').slice(0, 20);
  return `/lanepir-${hash}`;
}
