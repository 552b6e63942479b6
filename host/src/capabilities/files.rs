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

/// A directory grant, checked against the host.
#[derive(Debug, Clone)]
pub struct PreparedDir {
    host_path: PathBuf,
    guest_path: String,
    access: FileAccess,
    index: usize,
}

/// Checks every directory grant: read-write directories are created when
/// missing; every directory must exist and be a directory.
pub fn prepare(grants: &[FileGrant]) -> Result<Vec<PreparedDir>, GrantError> {
    grants
        .iter()
        .enumerate()
        .map(|(index, grant)| prepare_one(index, grant))
        .collect()
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
    let metadata = std::fs::metadata(path).map_err(|err| error(format!("{}: {err}", path.display())))?;
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

/// Preopens the directories in a new instance's WASI context.
pub fn apply(dirs: &[PreparedDir], builder: &mut WasiCtxBuilder) -> Result<(), GrantError> {
    for dir in dirs {
        builder
            .preopened_dir(&dir.host_path, &dir.guest_path, permissions(dir.access))
            .map_err(|err| GrantError {
                location: format!("files[{}].host_path", dir.index),
                message: format!("cannot open {}: {err}", dir.host_path.display()),
            })?;
    }
    Ok(())
}

/// WASI permissions for an access level.
fn permissions(access: FileAccess) -> FsPerms {
    match access {
        FileAccess::ReadOnly => FsPerms::ReadOnly,
        FileAccess::ReadWrite => FsPerms::ReadWrite,
    }
}

/// One line per directory.
pub fn describe(dirs: &[PreparedDir]) -> Vec<String> {
    dirs.iter()
        .map(|dir| {
            let access = match dir.access {
                FileAccess::ReadOnly => "read-only",
                FileAccess::ReadWrite => "read-write",
            };
            format!("files: {} as {} ({access})", dir.host_path.display(), dir.guest_path)
        })
        .collect()
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
        let prepared = prepare(&[grant(wanted.clone(), FileAccess::ReadWrite)]).expect("prepared");
        assert!(wanted.is_dir());
        assert_eq!(describe(&prepared).len(), 1);
    }

    #[test]
    fn a_missing_read_only_directory_is_an_error_naming_the_grant() {
        let temp = tempfile::tempdir().expect("tempdir");
        let err = prepare(&[grant(temp.path().join("nope"), FileAccess::ReadOnly)]).expect_err("missing");
        assert!(err.to_string().starts_with("plugin.grants.files[0].host_path"), "{err}");
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let temp = tempfile::tempdir().expect("tempdir");
        let file = temp.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let err = prepare(&[grant(file, FileAccess::ReadWrite)]).expect_err("file");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn read_only_grants_cannot_write() {
        assert!(permissions(FileAccess::ReadOnly).write_not_permitted());
        assert!(!permissions(FileAccess::ReadWrite).write_not_permitted());
    }
}
