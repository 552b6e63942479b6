//! The cache of precompiled components.
//!
//! Compiling a component takes from 0.1 s (a small Rust sink) to several
//! seconds (Python, JavaScript); loading it precompiled takes milliseconds.
//! An entry is named `<sha256 of the component>-<engine fingerprint>.cwasm`.
//! The fingerprint hashes `Engine::precompile_compatibility_hash`, which
//! covers the compiler target and flags, every engine setting that affects
//! code (epoch interruption, enabled wasm features, tunables) and the
//! wasmtime version (`CARGO_PKG_VERSION`, through the default
//! `ModuleVersionStrategy`): a changed plugin, a wasmtime upgrade or a
//! different setting misses the cache instead of loading incompatible code.
//!
//! Loading precompiled code is `unsafe` in wasmtime: the bytes are trusted to
//! be wasmtime's own output, and arbitrary bytes could run arbitrary native
//! code. That is acceptable here because the cache directory belongs to the
//! operator: whoever can write into it can already replace the sinkhost
//! binary or its configuration. Two checks still guard against accidents:
//! every entry has a sha256 sidecar that must match before the entry is
//! deserialised (a torn, truncated or corrupted file is recompiled, not run),
//! and wasmtime itself refuses an entry whose embedded version and settings
//! differ. The entry is read into memory once, checked, and deserialised
//! from those same bytes (`Component::deserialize`), rather than checked and
//! then mapped again by `Component::deserialize_file`, so the file cannot
//! change between the check and the load.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Extension of a cache entry.
const ENTRY_EXTENSION: &str = "cwasm";
/// Extension of an entry's checksum sidecar.
const SIDECAR_EXTENSION: &str = "cwasm.sha256";
/// Hex digits of the engine fingerprint kept in entry names (64 bits: a
/// collision would need two engine configurations on one machine).
const FINGERPRINT_HEX_DIGITS: usize = 16;

/// Where cached entries go when the config does not say:
/// `$SINKHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/sinkhost`, else
/// `$HOME/.cache/sinkhost`. Empty (and, for XDG, relative) values are
/// ignored, as the XDG base directory spec asks.
pub fn default_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("SINKHOST_CACHE_DIR") {
        return Some(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME").filter(|dir| dir.is_absolute()) {
        return Some(dir.join("sinkhost"));
    }
    var("HOME").map(|home| home.join(".cache").join("sinkhost"))
}

/// sha256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Feeds `Hash` output into sha256 so the fingerprint is stable across runs
/// (std's `DefaultHasher` is randomly keyed per process).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Hex fingerprint of the wasmtime version and engine settings.
pub fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut fingerprint = hex::encode(hasher.0.finalize());
    fingerprint.truncate(FINGERPRINT_HEX_DIGITS);
    fingerprint
}

/// The cache entry of a component for an engine.
pub fn entry_path(dir: &Path, digest: &str, engine: &Engine) -> PathBuf {
    dir.join(format!(
        "{digest}-{}.{ENTRY_EXTENSION}",
        engine_fingerprint(engine)
    ))
}

/// How the component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded precompiled from the cache.
    Hit,
    /// Compiled and stored in the cache.
    Miss,
    /// Compiled; there is no cache directory or it cannot be written
    /// (reason logged).
    Unavailable,
}

/// Loads the component from the cache or compiles it (and fills the cache).
/// A missing, corrupt or incompatible entry is recompiled and replaced.
pub fn load_or_compile(
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
    cache_dir: Option<&Path>,
) -> wasmtime::Result<(Component, CacheOutcome)> {
    let started = Instant::now();
    let Some(dir) = cache_dir else {
        let component = Component::new(engine, bytes)?;
        tracing::info!(
            digest,
            compile_ms = started.elapsed().as_millis() as u64,
            "plugin compiled (no cache directory)"
        );
        return Ok((component, CacheOutcome::Unavailable));
    };
    let entry = entry_path(dir, digest, engine);
    if let Some(component) = load_entry(engine, &entry) {
        tracing::info!(
            digest,
            cache = %entry.display(),
            load_ms = started.elapsed().as_millis() as u64,
            "plugin loaded from the precompiled cache"
        );
        return Ok((component, CacheOutcome::Hit));
    }
    let compiled = engine.precompile_component(bytes)?;
    let compile_ms = started.elapsed().as_millis() as u64;
    let outcome = match store_entry(dir, &entry, &compiled) {
        Ok(()) => CacheOutcome::Miss,
        Err(err) => {
            tracing::warn!(cache_dir = %dir.display(), error = %err, "cannot write the precompiled cache; the plugin is compiled at every start");
            CacheOutcome::Unavailable
        }
    };
    // SAFETY: `compiled` was produced just now by `precompile_component` of
    // this very engine.
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    tracing::info!(digest, compile_ms, cache = ?outcome, "plugin compiled");
    Ok((component, outcome))
}

fn sidecar(entry: &Path) -> PathBuf {
    entry.with_extension(SIDECAR_EXTENSION)
}

/// The entry, if present, intact and loadable by this engine.
fn load_entry(engine: &Engine, entry: &Path) -> Option<Component> {
    let expected = std::fs::read_to_string(sidecar(entry)).ok()?;
    let bytes = std::fs::read(entry).ok()?;
    if sha256_hex(&bytes) != expected.trim() {
        tracing::warn!(cache = %entry.display(), "precompiled cache entry does not match its checksum; recompiling");
        return None;
    }
    // SAFETY: see the module documentation. The cache directory is the
    // operator's; these exact bytes match the checksum written next to them
    // when `store_entry` stored `Engine::precompile_component` output of an
    // engine with this fingerprint (it is in the file name); wasmtime checks
    // the embedded version and settings and refuses a mismatch.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => Some(component),
        Err(err) => {
            tracing::warn!(cache = %entry.display(), error = %format!("{err:#}"), "precompiled cache entry unusable; recompiling");
            None
        }
    }
}

/// Writes the entry, then its checksum, each to a unique temporary name
/// renamed into place, so a reader never sees a half-written file and two
/// processes filling the cache at once do not collide.
fn store_entry(dir: &Path, entry: &Path, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_atomically(entry, compiled)?;
    write_atomically(&sidecar(entry), sha256_hex(compiled).as_bytes())
}

fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let tmp = PathBuf::from(tmp_name);
    let written = std::fs::write(&tmp, contents).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // Best effort: do not leave temporary files behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_depends_on_settings() {
        let a = Engine::default();
        assert_eq!(engine_fingerprint(&a), engine_fingerprint(&a));
        assert_eq!(engine_fingerprint(&a).len(), FINGERPRINT_HEX_DIGITS);
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let b = Engine::new(&config).expect("engine");
        assert_ne!(engine_fingerprint(&a), engine_fingerprint(&b));
    }

    #[test]
    fn entry_names_carry_digest_and_fingerprint() {
        let engine = Engine::default();
        let path = entry_path(Path::new("/cache"), "abc", &engine);
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(name, format!("abc-{}.cwasm", engine_fingerprint(&engine)));
        assert_eq!(
            sidecar(&path).file_name().and_then(|n| n.to_str()),
            Some(format!("abc-{}.cwasm.sha256", engine_fingerprint(&engine)).as_str())
        );
    }

    #[test]
    fn sha256_hex_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn atomic_writes_replace_and_leave_no_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.cwasm");
        write_atomically(&path, b"one").expect("write");
        write_atomically(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_corrupt_entry_is_not_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::default();
        let entry = entry_path(dir.path(), "abc", &engine);
        store_entry(dir.path(), &entry, b"not compiled code").expect("store");
        // Checksum matches, wasmtime refuses the bytes: recompile, no crash.
        assert!(load_entry(&engine, &entry).is_none());
        std::fs::write(sidecar(&entry), "0000").expect("sidecar");
        assert!(load_entry(&engine, &entry).is_none());
    }
}
