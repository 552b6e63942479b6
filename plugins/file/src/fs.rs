//! Atomic file placement helpers (std::fs, so they work natively in tests and
//! on WASI preview 2 inside the component).
//!
//! The durable write of one file is:
//! 1. create a uniquely named temporary file in the destination directory
//!    (`create_new`, so two writers never share one), write, and `sync_all`
//!    it when fsync is on;
//! 2. place it: `hard_link` to the final name (fails with `AlreadyExists`
//!    when the name is taken, so an existing file is never replaced) or
//!    `rename` over it (replace);
//! 3. remove the temporary name;
//! 4. the caller fsyncs the directory (once per batch and directory).
//!
//! Under WASI, `sync_dir` opens the directory as a descriptor and calls
//! `sync` on it; wasmtime implements that by fsyncing the host directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How many temporary names are tried before giving up (a name is only
/// taken again if another writer created exactly that name).
const TEMP_ATTEMPTS: u32 = 8;

/// A 64-bit value from the platform's random source (WASI `random` in the
/// component), via std's hash-map seeding: no extra dependency.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i64(crate::time::now_ns());
    hasher.finish()
}

/// Unique temporary file names: `.tmp-<hint>-<random>-<counter>`. They start
/// with a dot and have no extension, so they never match a reader's
/// `*.json` / `*.jsonl` pattern nor the segment-name parser.
#[derive(Debug)]
pub struct TempNames {
    seed: u64,
    counter: u64,
}

impl Default for TempNames {
    fn default() -> Self {
        Self::new()
    }
}

impl TempNames {
    pub fn new() -> Self {
        TempNames {
            seed: random_u64(),
            counter: 0,
        }
    }

    pub fn next(&mut self, hint: &str) -> String {
        self.counter = self.counter.wrapping_add(1);
        format!(".tmp-{hint}-{:016x}-{}", self.seed, self.counter)
    }
}

/// Writes `data` to a new temporary file in `dir` and syncs it when `fsync`.
/// Returns its path. Nothing is left behind on error.
pub fn write_temp(
    dir: &Path,
    names: &mut TempNames,
    hint: &str,
    data: &[u8],
    fsync: bool,
) -> io::Result<PathBuf> {
    let mut attempt = 0;
    let (path, mut file) = loop {
        let path = dir.join(names.next(hint));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => break (path, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < TEMP_ATTEMPTS => {
                attempt += 1;
                // Another writer holds this name: draw a new seed.
                *names = TempNames::new();
            }
            Err(e) => return Err(e),
        }
    };
    let result = file
        .write_all(data)
        .and_then(|()| if fsync { file.sync_all() } else { Ok(()) });
    drop(file);
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Result of placing a temporary file under its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// The file is now at the final name.
    Created,
    /// The final name already existed and was left untouched.
    AlreadyExists,
}

fn remove_temp(temp: &Path) {
    if let Err(e) = fs::remove_file(temp) {
        if e.kind() != io::ErrorKind::NotFound {
            crate::log::warn(&format!(
                "could not remove temporary file {}: {}",
                temp.display(),
                describe(&e)
            ));
        }
    }
}

/// Links `temp` to `dest` unless `dest` exists, then removes `temp`.
pub fn place_no_replace(temp: &Path, dest: &Path) -> io::Result<Placed> {
    let result = match fs::hard_link(temp, dest) {
        Ok(()) => Ok(Placed::Created),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Placed::AlreadyExists),
        Err(e) => Err(e),
    };
    remove_temp(temp);
    result
}

/// Renames `temp` over `dest` (atomic replace).
pub fn place_replace(temp: &Path, dest: &Path) -> io::Result<Placed> {
    match fs::rename(temp, dest) {
        Ok(()) => Ok(Placed::Created),
        Err(e) => {
            remove_temp(temp);
            Err(e)
        }
    }
}

/// Makes a directory's entries durable (fsync of the directory).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether something exists at `path` (without following a final symlink).
pub fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// An I/O error for logs and failure messages: text plus kind.
pub fn describe(e: &io::Error) -> String {
    format!("{e} [{:?}]", e.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_link_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let mut names = TempNames::new();
        let dest = dir.path().join("a.json");

        let t = write_temp(dir.path(), &mut names, "S-1", b"one", true).unwrap();
        assert!(t
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".tmp-S-1-"));
        assert_eq!(place_no_replace(&t, &dest).unwrap(), Placed::Created);
        assert!(!t.exists());

        let t = write_temp(dir.path(), &mut names, "S-1", b"two", true).unwrap();
        assert_eq!(place_no_replace(&t, &dest).unwrap(), Placed::AlreadyExists);
        assert!(!t.exists());
        assert_eq!(fs::read(&dest).unwrap(), b"one");

        let t = write_temp(dir.path(), &mut names, "S-1", b"three", false).unwrap();
        assert_eq!(place_replace(&t, &dest).unwrap(), Placed::Created);
        assert_eq!(fs::read(&dest).unwrap(), b"three");
        sync_dir(dir.path()).unwrap();

        // Only the destination is left.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(exists(&dest).unwrap());
        assert!(!exists(&dir.path().join("nope")).unwrap());
    }

    #[test]
    fn temp_in_missing_directory_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let mut names = TempNames::new();
        let e = write_temp(&dir.path().join("missing"), &mut names, "x", b"", true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn temp_names_are_unique() {
        let mut a = TempNames::new();
        let mut b = TempNames::new();
        let names = [a.next("h"), a.next("h"), b.next("h")];
        assert_ne!(names[0], names[1]);
        assert_ne!(names[0], names[2]);
    }
}
