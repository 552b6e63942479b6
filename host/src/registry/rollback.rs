//! Rollback protection: the host remembers, per registry repository, the
//! highest plugin version it has run from it, and refuses an older one
//! unless the reference pins it by digest.
//!
//! A registry (or whoever controls a tag) can otherwise serve yesterday's
//! release, correctly signed, with yesterday's bugs: the signature says who
//! published the bytes, not that they are the newest. The record is a small
//! JSON file, `<plugin cache>/oci/versions.json`, keyed by
//! `host[:port]/repository`, written to a temporary file and renamed, under
//! an exclusive lock on `versions.json.lock` so two hosts sharing the cache
//! cannot lose each other's update. A record that cannot be read stops the
//! run (fail closed): delete the file to reset the protection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::write_atomically;
use super::{PluginReference, RegistryError};

/// File name of the record, in the OCI cache root.
pub const STATE_FILE: &str = "versions.json";
/// Schema name of the record.
const STATE_SCHEMA: &str = "sinkhost.registry-versions.v1";

/// The record as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    schema: String,
    /// `host[:port]/repository` -> the highest version run from it.
    repositories: BTreeMap<String, Seen>,
}

/// The highest version run from one repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seen {
    version: String,
    manifest_digest: String,
}

/// What [`VersionRecord::admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Not older than anything run before (recorded if newer).
    Current,
    /// Older than the recorded version, allowed because the reference pins
    /// its digest; the record keeps the higher version.
    PinnedDowngrade {
        /// The highest version run before.
        recorded: String,
    },
}

/// The version record under one OCI cache root.
#[derive(Debug, Clone)]
pub struct VersionRecord {
    path: PathBuf,
}

impl VersionRecord {
    /// The record kept in `root` (the OCI cache root).
    pub fn new(root: &Path) -> Self {
        Self {
            path: root.join(STATE_FILE),
        }
    }

    /// Admits `version` of the plugin at `reference` (whose manifest has
    /// `manifest_digest`): refused when it is older than the highest
    /// version run from the same repository, unless `reference` pins a
    /// digest; recorded when it is newer.
    pub fn admit(
        &self,
        reference: &PluginReference,
        version: &str,
        manifest_digest: &str,
    ) -> Result<Admission, RegistryError> {
        let offered = parse_version(reference, version)?;
        let key = format!("{}/{}", reference.registry, reference.repository);
        let _lock = self.lock()?;
        let mut state = self.read()?;
        if let Some(seen) = state.repositories.get(&key) {
            let recorded = parse_version(reference, &seen.version)?;
            if offered < recorded {
                if reference.digest.is_some() {
                    return Ok(Admission::PinnedDowngrade {
                        recorded: seen.version.clone(),
                    });
                }
                return Err(RegistryError::Rollback {
                    reference: reference.to_string(),
                    offered: version.to_string(),
                    recorded: seen.version.clone(),
                    repository: key,
                    pin: format!(
                        "oci://{}/{}@{manifest_digest}",
                        reference.registry, reference.repository
                    ),
                });
            }
            if offered == recorded {
                return Ok(Admission::Current);
            }
        }
        state.repositories.insert(
            key,
            Seen {
                version: version.to_string(),
                manifest_digest: manifest_digest.to_string(),
            },
        );
        self.write(&state)?;
        Ok(Admission::Current)
    }

    fn io_error(path: &Path, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// An exclusive lock held while the record is read and rewritten.
    fn lock(&self) -> Result<std::fs::File, RegistryError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Self::io_error(dir, source))?;
        }
        let lock_path = self.path.with_extension("json.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Self::io_error(&lock_path, source))?;
        file.lock()
            .map_err(|source| Self::io_error(&lock_path, source))?;
        Ok(file)
    }

    fn read(&self) -> Result<State, RegistryError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    schema: STATE_SCHEMA.to_string(),
                    repositories: BTreeMap::new(),
                })
            }
            Err(source) => return Err(Self::io_error(&self.path, source)),
        };
        let invalid = |reason: String| {
            Self::io_error(
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the plugin version record (rollback protection) is not valid: {reason}; delete the file to reset it"),
                ),
            )
        };
        let state: State =
            serde_json::from_slice(&bytes).map_err(|err| invalid(err.to_string()))?;
        if state.schema != STATE_SCHEMA {
            return Err(invalid(format!(
                "schema `{}`, expected {STATE_SCHEMA}",
                state.schema
            )));
        }
        Ok(state)
    }

    fn write(&self, state: &State) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|err| Self::io_error(&self.path, std::io::Error::other(err.to_string())))?;
        write_atomically(&self.path, &bytes)
    }
}

fn parse_version(
    reference: &PluginReference,
    version: &str,
) -> Result<semver::Version, RegistryError> {
    semver::Version::parse(version).map_err(|err| RegistryError::NotAPlugin {
        reference: reference.to_string(),
        reason: format!("its manifest version `{version}` is not a semantic version ({err}): rollback protection cannot compare it"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn reference(text: &str) -> PluginReference {
        PluginReference::parse(text).expect("reference")
    }

    #[test]
    fn an_older_version_is_refused_unless_pinned_by_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = VersionRecord::new(dir.path());
        let tag = |tag: &str| reference(&format!("oci://127.0.0.1:5000/sinks/file:{tag}"));
        assert_eq!(
            record
                .admit(&tag("2"), "2.0.0", "sha256:v2")
                .expect("admitted"),
            Admission::Current
        );
        assert_eq!(
            record
                .admit(&tag("2"), "2.0.0", "sha256:v2")
                .expect("admitted"),
            Admission::Current
        );
        let error = record
            .admit(&tag("1"), "1.9.9", DIGEST)
            .expect_err("rollback");
        let text = error.to_string();
        assert!(
            text.contains("1.9.9")
                && text.contains("2.0.0")
                && text.contains(&format!("oci://127.0.0.1:5000/sinks/file@{DIGEST}")),
            "{text}"
        );
        let pinned = reference(&format!("oci://127.0.0.1:5000/sinks/file@{DIGEST}"));
        assert_eq!(
            record.admit(&pinned, "1.9.9", DIGEST).expect("admitted"),
            Admission::PinnedDowngrade {
                recorded: "2.0.0".into()
            }
        );
        assert!(
            record.admit(&tag("1"), "1.9.9", DIGEST).is_err(),
            "running the pinned downgrade does not lower the record"
        );
        // Another repository, or the same path on another registry, has its
        // own record.
        let other = reference("oci://127.0.0.1:5000/sinks/http:1");
        assert_eq!(
            record.admit(&other, "1.0.0", DIGEST).expect("admitted"),
            Admission::Current
        );
        let mirror = reference("oci://127.0.0.1:5001/sinks/file:1");
        assert_eq!(
            record.admit(&mirror, "1.0.0", DIGEST).expect("admitted"),
            Admission::Current
        );
        // Newer moves the record up.
        assert_eq!(
            record
                .admit(&tag("3"), "3.0.0-rc.1", DIGEST)
                .expect("admitted"),
            Admission::Current
        );
        assert!(record.admit(&tag("2"), "2.0.0", DIGEST).is_err());
    }

    #[test]
    fn a_damaged_record_stops_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(STATE_FILE), "{not json").expect("write");
        let record = VersionRecord::new(dir.path());
        let error = record
            .admit(
                &reference("oci://127.0.0.1:5000/sinks/file:1"),
                "1.0.0",
                DIGEST,
            )
            .expect_err("damaged");
        assert!(error.to_string().contains("delete the file"), "{error}");
    }

    #[test]
    fn a_version_that_is_not_semver_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = VersionRecord::new(dir.path());
        assert!(record
            .admit(
                &reference("oci://127.0.0.1:5000/sinks/file:1"),
                "latest",
                DIGEST
            )
            .is_err());
    }
}
