//! The `files` capability: host directories preopened for the plugin.
//!
//! The plugin sees each granted directory under its `guest_path` and nothing
//! else of the file system. wasmtime-wasi resolves every path the plugin
//! opens inside the preopened directory (cap-std): absolute paths outside the
//! preopens, `..` past the root and symlinks pointing out all fail.

use std::path::PathBuf;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::GrantError;
use crate::config::{FileAccess, FileGrant};

use super::Capability;

/// The granted directories, checked against the host.
#[derive(Debug, Clone, Default)]
pub struct Files {
    dirs: Vec<PreparedDir>,
}

/// A directory grant, checked against the host.
#[derive(Debug, Clone)]
struct PreparedDir {
    host_path: PathBuf,
    guest_path: String,
    access: FileAccess,
    index: usize,
}

impl Files {
    /// Whether any directory is granted.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

impl Capability for Files {
    type Grant = FileGrant;
    const NAME: &'static str = "files";

    /// Read-write directories are created when missing; every directory must
    /// exist and be a directory. Host paths are canonicalised once, so a
    /// symlink swapped later does not move the grant.
    fn prepare(grants: &[FileGrant]) -> Result<Self, GrantError> {
        let dirs = grants
            .iter()
            .enumerate()
            .map(|(index, grant)| prepare_one(index, grant))
            .collect::<Result<_, _>>()?;
        Ok(Self { dirs })
    }

    /// Preopens the directories with the permissions of their `access`.
    fn apply(&self, builder: &mut WasiCtxBuilder) -> Result<(), GrantError> {
        for dir in &self.dirs {
            builder
                .preopened_dir(&dir.host_path, &dir.guest_path, permissions(dir.access))
                .map_err(|err| GrantError {
                    location: format!("files[{}].host_path", dir.index),
                    message: format!("cannot open {}: {err}", dir.host_path.display()),
                })?;
        }
        Ok(())
    }

    fn describe(&self) -> Vec<String> {
        self.dirs
            .iter()
            .map(|dir| {
                let access = match dir.access {
                    FileAccess::ReadOnly => "read-only",
                    FileAccess::ReadWrite => "read-write",
                };
                format!(
                    "files: {} as {} ({access})",
                    dir.host_path.display(),
                    dir.guest_path
                )
            })
            .collect()
    }
}

fn prepare_one(index: usize, grant: &FileGrant) -> Result<PreparedDir, GrantError> {
    let error = |message: String| GrantError {
        location: format!("files[{index}].host_path"),
        message,
    };
    let path = &grant.host_path;
    if grant.access == FileAccess::ReadWrite && !path.exists() {
        std::fs::create_dir_all(path)
            .map_err(|err| error(format!("cannot create {}: {err}", path.display())))?;
    }
    let metadata =
        std::fs::metadata(path).map_err(|err| error(format!("{}: {err}", path.display())))?;
    if !metadata.is_dir() {
        return Err(error(format!("{} is not a directory", path.display())));
    }
    let host_path = path
        .canonicalize()
        .map_err(|err| error(format!("{}: {err}", path.display())))?;
    Ok(PreparedDir {
        host_path,
        guest_path: grant.guest_path.clone(),
        access: grant.access,
        index,
    })
}

/// WASI permissions for an access level: `read-only` gives
/// `FsPerms::ReadOnly` (wasmtime-wasi 48 has one permission set for the
/// directory and the files in it; no create, write, rename or remove).
fn permissions(access: FileAccess) -> FsPerms {
    match access {
        FileAccess::ReadOnly => FsPerms::ReadOnly,
        FileAccess::ReadWrite => FsPerms::ReadWrite,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(path: PathBuf, access: FileAccess) -> FileGrant {
        FileGrant {
            host_path: path,
            guest_path: "/out".into(),
            access,
        }
    }

    #[test]
    fn read_write_directories_are_created() {
        let temp = tempfile::tempdir().expect("tempdir");
        let wanted = temp.path().join("a/b");
        let prepared =
            Files::prepare(&[grant(wanted.clone(), FileAccess::ReadWrite)]).expect("prepared");
        assert!(wanted.is_dir());
        assert_eq!(
            prepared.describe(),
            vec![format!(
                "files: {} as /out (read-write)",
                wanted.canonicalize().expect("canonical").display()
            )]
        );
    }

    #[test]
    fn a_missing_read_only_directory_is_an_error_naming_the_grant() {
        let temp = tempfile::tempdir().expect("tempdir");
        let err = Files::prepare(&[grant(temp.path().join("nope"), FileAccess::ReadOnly)])
            .expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("plugin.grants.files[0].host_path"),
            "{err}"
        );
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let temp = tempfile::tempdir().expect("tempdir");
        let file = temp.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let err = Files::prepare(&[grant(file, FileAccess::ReadWrite)]).expect_err("file");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn grants_are_applied_to_a_wasi_context() {
        let temp = tempfile::tempdir().expect("tempdir");
        let files = Files::prepare(&[grant(temp.path().to_path_buf(), FileAccess::ReadOnly)])
            .expect("prepared");
        let mut builder = WasiCtxBuilder::new();
        files.apply(&mut builder).expect("applied");
    }

    #[test]
    fn read_only_grants_cannot_write() {
        assert!(permissions(FileAccess::ReadOnly).write_not_permitted());
        assert!(!permissions(FileAccess::ReadWrite).write_not_permitted());
    }
}
