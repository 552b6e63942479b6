//! File placement helpers (std::fs, so they work natively in tests and on
//! WASI preview 2 inside the component).
//!
//! Two ways to write a file:
//!
//! - **Direct** ([`write_new`]): create the final name with `create_new`
//!   (`O_EXCL`, fails with `AlreadyExists` when the name is taken, so an
//!   existing file is never touched), write, `sync_all` when fsync is on,
//!   close. One path operation: the per-message layout's normal path. A crash
//!   in the middle can leave a partial file under the final name; the caller
//!   recognises it on redelivery (it does not parse) and repairs it.
//! - **Atomic** ([`write_temp`] + [`place_no_replace`] / [`place_replace`]):
//!   create a uniquely named temporary file (`create_new`), write, sync,
//!   then `hard_link` it to the final name (never replaces) or `rename` it
//!   over the final name (replaces), and remove the temporary name. A reader
//!   sees no file or a complete one. Used for segments, for repairs and for
//!   `overwrite`.
//!
//! Either way the caller fsyncs the directory (once per batch and directory)
//! before it reports a file stored. Under WASI, `sync_dir` opens the directory
//! as a descriptor and calls `sync` on it; wasmtime implements that by
//! fsyncing the host directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// How many temporary names are tried before giving up (a name is only
/// taken again if another writer created exactly that name).
const TEMP_ATTEMPTS: u32 = 8;

/// Writes all of `data` at the start of `file` (a newly created one).
///
/// Under WASI this calls wasi-libc's `pwrite`, which is one
/// `descriptor.write` host call that wasmtime runs on the calling thread.
/// std's `Write for File` goes through a WASI output stream instead
/// (`write-via-stream`, `check-write`, `write`, `blocking-flush`), and
/// wasmtime performs a stream write on its blocking thread pool: a thread
/// hand-off per write, which cost more than the write itself in the
/// per-message layout.
#[cfg(target_os = "wasi")]
pub fn write_all_new(file: &File, data: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    extern "C" {
        // wasi-libc: `ssize_t pwrite(int, const void *, size_t, off_t)`,
        // `off_t` being 64-bit.
        fn pwrite(fd: i32, buf: *const u8, nbyte: usize, offset: i64) -> isize;
    }
    let fd = file.as_raw_fd();
    let mut written = 0usize;
    while written < data.len() {
        let rest = &data[written..];
        let offset =
            i64::try_from(written).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `rest` is a live, initialised buffer of `rest.len()` bytes
        // and `fd` is the open descriptor of `file`, which outlives the call.
        let n = unsafe { pwrite(fd, rest.as_ptr(), rest.len(), offset) };
        match n {
            n if n > 0 => written += n as usize,
            0 => return Err(io::ErrorKind::WriteZero.into()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Writes all of `data` at the start of `file` (a newly created one).
#[cfg(not(target_os = "wasi"))]
pub fn write_all_new(mut file: &File, data: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    file.write_all(data)
}

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
    let (path, file) = loop {
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
    let result =
        write_all_new(&file, data).and_then(|()| if fsync { file.sync_all() } else { Ok(()) });
    drop(file);
    match result {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Result of [`write_new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The file was created and written (and synced when asked).
    Written,
    /// The name was taken; nothing was written.
    AlreadyExists,
}

/// Creates `path` exclusively (`create_new`), writes `data`, syncs it when
/// `fsync`, closes it. An existing file is left untouched
/// (`Created::AlreadyExists`). If writing or syncing fails, the partial file
/// is removed (best effort: if that fails too, a torn file stays behind,
/// which the caller recognises and repairs when the message comes again).
/// A missing directory is `NotFound`.
pub fn write_new(path: &Path, data: &[u8], fsync: bool) -> io::Result<Created> {
    let file = match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Created::AlreadyExists),
        Err(e) => return Err(e),
    };
    let result =
        write_all_new(&file, data).and_then(|()| if fsync { file.sync_all() } else { Ok(()) });
    drop(file);
    match result {
        Ok(()) => Ok(Created::Written),
        Err(e) => {
            remove_temp(path);
            Err(e)
        }
    }
}

/// Opens an existing file for reading and reads it whole. The handle is
/// returned so the caller can `sync_all` it without opening it again.
pub fn read_existing(path: &Path) -> io::Result<(File, Vec<u8>)> {
    let mut file = File::open(path)?;
    let mut content = Vec::new();
    file.read_to_end(&mut content)?;
    Ok((file, content))
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
            sinkhost_sdk::log::warn(&format!(
                "could not remove partial or temporary file {}: {}",
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
    }

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.json");
        assert_eq!(write_new(&dest, b"one", true).unwrap(), Created::Written);
        assert_eq!(
            write_new(&dest, b"two", false).unwrap(),
            Created::AlreadyExists
        );
        let (file, content) = read_existing(&dest).unwrap();
        assert_eq!(content, b"one");
        // A read-only handle can be synced.
        file.sync_all().unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let e = write_new(&dir.path().join("missing/a.json"), b"", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            read_existing(&dir.path().join("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
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
