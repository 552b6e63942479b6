//! The local copy of plugins pulled for `sinkhost run --plugin oci://...`,
//! keyed by the component's digest: `<root>/sha256/<hex>.wasm` and its
//! signature document beside it, `<hex>.wasm.sig`, so the normal load path
//! (which reads `PLUGIN.sig`) applies the trust policy to it unchanged.
//!
//! The cache is trusted no more than the registry: every entry is read into
//! memory and its sha256 recomputed against the manifest's descriptors
//! before it is used (see [`super::oci::resolve`]). Files are written to a
//! temporary name and renamed, so a reader never sees half an entry.

use std::path::{Path, PathBuf};

use super::RegistryError;

/// Where pulled plugins are kept: `<plugin cache>/oci`, the plugin cache
/// being `plugin.cache_dir` when the config sets it, else
/// `$SINKHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/sinkhost`, else
/// `~/.cache/sinkhost` (as for precompiled components).
pub fn default_root(configured: Option<&Path>) -> Option<PathBuf> {
    configured
        .map(Path::to_path_buf)
        .or_else(crate::plugin::cache::default_dir)
        .map(|dir| dir.join("oci"))
}

/// The digest-keyed cache under one root directory.
#[derive(Debug, Clone)]
pub struct OciCache {
    root: PathBuf,
}

/// A cached component and signature document, read but not yet verified.
#[derive(Debug)]
pub struct CachedEntry {
    /// The component's bytes.
    pub component: Vec<u8>,
    /// The signature document's bytes.
    pub signature: Vec<u8>,
}

impl OciCache {
    /// A cache rooted at `root` (created on first store).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The cache's root directory (it also holds the version record of
    /// [`super::rollback`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the component with `digest` (`sha256:<hex>`, already checked to
    /// be 64 hex digits) is kept.
    pub fn component_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("sha256").join(format!("{hex}.wasm"))
    }

    /// Reads the entry for `digest`, if both files are there.
    pub fn read(&self, digest: &str) -> Result<Option<CachedEntry>, RegistryError> {
        let component_path = self.component_path(digest);
        let signature_path = crate::signing::signature_path(&component_path);
        let Some(component) = read_if_present(&component_path)? else {
            return Ok(None);
        };
        let Some(signature) = read_if_present(&signature_path)? else {
            return Ok(None);
        };
        Ok(Some(CachedEntry {
            component,
            signature,
        }))
    }

    /// Stores a verified component and its signature document; returns the
    /// component's path.
    pub fn store(
        &self,
        digest: &str,
        component: &[u8],
        signature: &[u8],
    ) -> Result<PathBuf, RegistryError> {
        let component_path = self.component_path(digest);
        if let Some(dir) = component_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| RegistryError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        write_atomically(&component_path, component)?;
        write_atomically(&crate::signing::signature_path(&component_path), signature)?;
        Ok(component_path)
    }
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, RegistryError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RegistryError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it
/// over `path`.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::io::Write as _;
    let io_error = |path: &Path, source| RegistryError::Io {
        path: path.display().to_string(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(io_error(path, source));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn an_entry_is_stored_beside_its_signature_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = OciCache::new(dir.path().join("oci"));
        assert!(cache.read(DIGEST).expect("read").is_none());
        let path = cache.store(DIGEST, b"\0asm", b"{}").expect("store");
        assert_eq!(
            path,
            dir.path().join(
                "oci/sha256/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.wasm"
            )
        );
        assert!(crate::signing::signature_path(&path).exists());
        let entry = cache.read(DIGEST).expect("read").expect("present");
        assert_eq!(entry.component, b"\0asm");
        assert_eq!(entry.signature, b"{}");
        std::fs::remove_file(crate::signing::signature_path(&path)).expect("remove");
        assert!(
            cache.read(DIGEST).expect("read").is_none(),
            "an entry without its signature is a miss"
        );
    }

    #[test]
    fn the_root_follows_the_plugin_cache() {
        assert_eq!(
            default_root(Some(Path::new("/var/cache/sinkhost"))),
            Some(PathBuf::from("/var/cache/sinkhost/oci"))
        );
    }
}
