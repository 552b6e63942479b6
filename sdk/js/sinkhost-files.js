// sinkhost-files.js: writing files under a granted directory from a
// JavaScript sink. The JavaScript engine has no file API of its own: this
// calls `wasi:filesystem` directly, so the sink's WIT world must import it:
//
//   world js-plugin {
//     include sinkhost:sink/plugin@0.1.0;
//     import wasi:filesystem/preopens@0.2.12;
//   }
//
// (build.sh of the example and of `sinkhost plugin new --lang js` set this
// up). The host preopens only the directories the operator granted
// (`plugin.grants.files`); everything else is out of reach.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { ConfigError, transient } from './sinkhost.js';

function errorCode(error) {
  if (error && typeof error === 'object' && 'payload' in error) return String(error.payload);
  return error instanceof Error ? error.message : String(error);
}

function release(resource) {
  if (resource && typeof resource[Symbol.dispose] === 'function') resource[Symbol.dispose]();
}

/**
 * Resolves a guest path such as `/data/out` against the granted (preopened)
 * directories: `{ path, root, prefix }` where `prefix` is the path relative
 * to the grant (`out`, or `` for the grant itself). Throws a ConfigError
 * naming `field` when no grant holds it or the path is not plain.
 */
export function grantedDirectory(path, field = 'sink.directory') {
  if (!path.startsWith('/')) throw new ConfigError(`${field} must be an absolute guest path such as /out`);
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new ConfigError(`${field} must not contain '..'`);
  const normal = '/' + parts.join('/');
  let best;
  for (const [descriptor, guestPath] of getDirectories()) {
    const base = '/' + guestPath.split('/').filter((part) => part !== '' && part !== '.').join('/');
    const inside = normal === base || base === '/' || normal.startsWith(base + '/');
    if (inside && (!best || base.length > best.base.length)) best = { descriptor, base };
  }
  if (!best) {
    throw new ConfigError(`${field} (${path}) is not inside a granted directory: grant it in plugin.grants.files`);
  }
  const prefix = normal.slice(best.base === '/' ? 1 : best.base.length + 1);
  return { path: normal, root: best.descriptor, prefix };
}

function join(prefix, name) {
  return prefix === '' ? name : `${prefix}/${name}`;
}

/** Creates `dir.prefix` (and its parents) under its grant when missing; I/O errors are transient. */
export function ensureDirectory(dir) {
  let sofar = '';
  for (const part of dir.prefix.split('/').filter(Boolean)) {
    sofar = join(sofar, part);
    try {
      dir.root.createDirectoryAt(sofar);
    } catch (error) {
      if (errorCode(error) !== 'exist') throw transient(`cannot create ${dir.path}: ${errorCode(error)}`);
    }
  }
}

/**
 * Writes `bytes` to `name` inside `dir`, replacing any earlier file of that
 * name atomically (a temporary file, then a rename): a reader sees the old or
 * the new record, never half of one, and writing the same name again (a
 * redelivery) replaces it. With `fsync`, the data is on disk before the
 * rename. Every I/O error is a transient SinkError (the host retries).
 */
export function writeFileAtomic(dir, name, bytes, { fsync = true } = {}) {
  const final = join(dir.prefix, name);
  const temporary = join(dir.prefix, `.${name}.tmp`);
  let file;
  try {
    file = dir.root.openAt({}, temporary, { create: true, truncate: true }, { write: true });
    let offset = 0;
    while (offset < bytes.length) {
      const written = Number(file.write(bytes.subarray(offset), BigInt(offset)));
      if (written <= 0) throw new Error('short write');
      offset += written;
    }
    if (fsync) file.syncData();
  } catch (error) {
    release(file);
    throw transient(`cannot write ${dir.path}/${name}: ${errorCode(error)}`);
  }
  release(file);
  try {
    dir.root.renameAt(temporary, dir.root, final);
  } catch (error) {
    throw transient(`cannot rename into ${dir.path}/${name}: ${errorCode(error)}`);
  }
}
