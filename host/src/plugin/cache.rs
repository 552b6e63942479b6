//! The cache of precompiled components.
//!
//! Compiling a component takes from 0.1 s (a small Rust sink) to several
//! seconds (Python, JavaScript); loading it precompiled takes milliseconds.
//! Entries are keyed by the sha256 of the component bytes and a hash of
//! everything that makes compiled code compatible: the wasmtime version and
//! the engine settings (`Engine::precompile_compatibility_hash`). A changed
//! plugin, a wasmtime upgrade or different engine settings therefore miss the
//! cache instead of loading incompatible code.
//!
//! Loading precompiled code is `unsafe` in wasmtime: the bytes are trusted to
//! be wasmtime's own output. The cache directory belongs to the operator
//! (whoever can write there can already replace the sinkhost binary's
//! inputs); in addition every entry has a sha256 sidecar checked before the
//! entry is deserialised, so a torn or corrupted file is recompiled, not run.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where cached entries go when the config does not say.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SINKHOST_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("sinkhost"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/sinkhost"))
}

/// sha256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Feeds `Hash` output into sha256 so the key is stable across runs.
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

/// Hex digest of the wasmtime version and engine settings.
pub fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(b"wasmtime-48.0.8");
    hex::encode(&hasher.0.finalize()[..8])
}

/// How the component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded precompiled from the cache.
    Hit,
    /// Compiled and stored in the cache.
    Miss,
    /// Compiled; the cache could not be used (reason logged).
    Unavailable,
}

/// Loads the component from the cache or compiles it (and fills the cache).
pub fn load_or_compile(
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
    cache_dir: Option<&Path>,
) -> wasmtime::Result<(Component, CacheOutcome)> {
    let Some(dir) = cache_dir else {
        return Ok((Component::new(engine, bytes)?, CacheOutcome::Unavailable));
    };
    let entry = dir.join(format!("{digest}-{}.cwasm", engine_fingerprint(engine)));
    let started = Instant::now();
    if let Some(component) = load_entry(engine, &entry) {
        tracing::info!(path = %entry.display(), elapsed_ms = started.elapsed().as_millis() as u64, "plugin loaded from the precompiled cache");
        return Ok((component, CacheOutcome::Hit));
    }
    let compiled = engine.precompile_component(bytes)?;
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "plugin compiled");
    let outcome = match store_entry(dir, &entry, &compiled) {
        Ok(()) => CacheOutcome::Miss,
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot write the precompiled cache; compiling at every start");
            CacheOutcome::Unavailable
        }
    };
    // SAFETY: `compiled` was produced just now by this engine.
    let component = unsafe { Component::deserialize(engine, &compiled)? };
    Ok((component, outcome))
}

fn sidecar(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.sha256")
}

fn load_entry(engine: &Engine, entry: &Path) -> Option<Component> {
    let expected = std::fs::read_to_string(sidecar(entry)).ok()?;
    let bytes = std::fs::read(entry).ok()?;
    if sha256_hex(&bytes) != expected.trim() {
        tracing::warn!(path = %entry.display(), "precompiled cache entry is corrupt; recompiling");
        return None;
    }
    // SAFETY: the entry was written by `store_entry` from
    // `Engine::precompile_component` output of an engine with the same
    // fingerprint (it is in the file name), and its checksum matches. wasmtime
    // still checks the version and settings header and refuses a mismatch.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => Some(component),
        Err(err) => {
            tracing::warn!(path = %entry.display(), error = %err, "precompiled cache entry unusable; recompiling");
            None
        }
    }
}

fn store_entry(dir: &Path, entry: &Path, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let unique = format!("{}.{}", std::process::id(), rand::random::<u64>());
    let tmp = entry.with_extension(format!("tmp-{unique}"));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, entry)?;
    let sum_tmp = sidecar(entry).with_extension(format!("tmp-{unique}"));
    std::fs::write(&sum_tmp, sha256_hex(compiled))?;
    std::fs::rename(&sum_tmp, sidecar(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_depends_on_settings() {
        let a = Engine::default();
        assert_eq!(engine_fingerprint(&a), engine_fingerprint(&a));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let b = Engine::new(&config).expect("engine");
        assert_ne!(engine_fingerprint(&a), engine_fingerprint(&b));
    }

    #[test]
    fn sha256_hex_known_value() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
