//! The `files` capability: host directories preopened for the plugin.
//!
//! The plugin sees each granted directory under its `guest_path` and nothing
//! else of the file system. wasmtime-wasi resolves every path the plugin
//! opens inside the preopened directory (cap-std): absolute paths outside the
//! preopens, `..` past the root and symlinks pointing out all fail.
//!
//! On top of that the host links its own `wasi:filesystem/types` (a
//! [`FsGuardView`] in front of wasmtime-wasi's) that bounds what a plugin can
//! make the host hold or write:
//!
//! - at most [`MAX_OPEN_DESCRIPTORS`] descriptors per instance (each one is
//!   a host file descriptor); past it `open-at` fails with `quota`;
//! - an optional byte quota per grant (`quota_bytes`), shared by every
//!   instance: the directory's usage at load plus every byte written (by
//!   `write`, by the output streams of `write-via-stream` and
//!   `append-via-stream`), every byte a `set-size` grows a file by, and
//!   [`ENTRY_COST_BYTES`] per created file or directory. Bytes are never
//!   credited back (overwriting, truncating, removing), so no sequence of
//!   calls gets past it. A write past it fails with `insufficient-space`;
//! - `symlink-at` is refused (`not-permitted`): a plugin cannot leave links
//!   in the directory for host tools to follow later.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    ErrorCode, HostDescriptor, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::bindings::filesystem::{preopens, types};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, FsError, FsResult, OutputStream, Pollable, StreamError,
    StreamResult,
};
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
    /// The byte quota, shared by every instance of the plugin.
    quota: Option<Arc<Quota>>,
}

impl Files {
    /// Whether any directory is granted.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The limits of a new instance: its own descriptor count, the grants'
    /// shared quotas (in preopen order).
    pub fn guard(&self) -> FsGuard {
        FsGuard {
            quotas: self.dirs.iter().map(|dir| dir.quota.clone()).collect(),
            open: 0,
            grant_of: HashMap::new(),
        }
    }
}

/// Most descriptors (open files and directories, preopens included) one
/// instance may hold at once. Each is a host file descriptor; a sink needs a
/// handful, and a pool of instances must not exhaust the host's descriptor
/// limit (often 1,024), which the NATS connection and the databases share.
pub const MAX_OPEN_DESCRIPTORS: usize = 256;
/// What creating a file or a directory costs from a quota: about one block
/// and an inode, so a quota also bounds a plugin creating millions of empty
/// files or an endlessly deep directory tree.
pub const ENTRY_COST_BYTES: u64 = 4096;

/// A byte quota of one grant: the limit and what is used (shared).
#[derive(Debug)]
pub struct Quota {
    limit: u64,
    used: AtomicU64,
}

impl Quota {
    /// A quota of `limit` bytes of which `used` are taken.
    pub fn new(limit: u64, used: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(used),
        }
    }

    /// Takes `bytes` if they fit; false (nothing taken) if not.
    pub fn charge(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Gives back bytes charged for a write that did not happen.
    fn refund(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used.load(Ordering::Relaxed))
    }
}

/// Bytes of regular files below `dir` (symlinks not followed), for a
/// quota's starting usage. Unreadable entries count nothing.
fn usage(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                total = total.saturating_add(ENTRY_COST_BYTES);
                pending.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

/// The per-instance state of the guarded filesystem.
#[derive(Debug, Default)]
pub struct FsGuard {
    /// The quota of each preopen (grant order), if any.
    quotas: Vec<Option<Arc<Quota>>>,
    /// Descriptors the instance holds.
    open: usize,
    /// Which grant each live descriptor (by handle) belongs to.
    grant_of: HashMap<u32, usize>,
}

impl FsGuard {
    fn quota_of(&self, rep: u32) -> Option<Arc<Quota>> {
        let grant = *self.grant_of.get(&rep)?;
        self.quotas.get(grant).cloned().flatten()
    }
}

/// The guarded `wasi:filesystem` of one instance: wasmtime-wasi's view plus
/// the instance's [`FsGuard`].
pub struct FsGuardView<'a> {
    /// wasmtime-wasi's filesystem view (does the work).
    pub fs: WasiFilesystemCtxView<'a>,
    /// The limits.
    pub guard: &'a mut FsGuard,
}

/// [`HasData`] for the guarded filesystem.
pub struct GuardedFilesystem;

impl HasData for GuardedFilesystem {
    type Data<'a> = FsGuardView<'a>;
}

/// Replaces wasmtime-wasi's `wasi:filesystem/types` and `preopens` in
/// `linker` (already holding them) with the guarded ones.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> FsGuardView<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = types::add_to_linker::<T, GuardedFilesystem>(linker, view)
        .and_then(|()| preopens::add_to_linker::<T, GuardedFilesystem>(linker, view));
    linker.allow_shadowing(false);
    linked
}

/// `ENOSPC` (28 on Linux and macOS, the hosts sinkhost runs on).
const ENOSPC: i32 = 28;

/// The error a stream write past a quota returns to the guest (`ENOSPC`,
/// which wasmtime-wasi maps to `insufficient-space`).
fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(ENOSPC)
}

impl preopens::Host for FsGuardView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<types::Descriptor>, String)>> {
        let count = self.guard.quotas.len();
        if self.guard.open.saturating_add(count) > MAX_OPEN_DESCRIPTORS {
            return Err(wasmtime::Error::msg(format!(
                "more than {MAX_OPEN_DESCRIPTORS} open descriptors"
            )));
        }
        let dirs = preopens::Host::get_directories(&mut self.fs)?;
        for (index, (fd, _)) in dirs.iter().enumerate() {
            self.guard.grant_of.insert(fd.rep(), index);
            self.guard.open += 1;
        }
        Ok(dirs)
    }
}

impl types::Host for FsGuardView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.fs, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.fs, err)
    }
}

impl HostDirectoryEntryStream for FsGuardView<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        HostDirectoryEntryStream::read_directory_entry(&mut self.fs, stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.fs, stream)
    }
}

fn borrow(fd: &Resource<types::Descriptor>) -> Resource<types::Descriptor> {
    Resource::new_borrow(fd.rep())
}

impl HostDescriptor for FsGuardView<'_> {
    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        HostDescriptor::advise(&mut self.fs, fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        HostDescriptor::sync_data(&mut self.fs, fd).await
    }

    async fn get_flags(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorFlags> {
        HostDescriptor::get_flags(&mut self.fs, fd).await
    }

    async fn get_type(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorType> {
        HostDescriptor::get_type(&mut self.fs, fd).await
    }

    /// Growing a file is charged like writing (a sparse file still counts).
    async fn set_size(
        &mut self,
        fd: Resource<types::Descriptor>,
        size: types::Filesize,
    ) -> FsResult<()> {
        let Some(quota) = self.guard.quota_of(fd.rep()) else {
            return HostDescriptor::set_size(&mut self.fs, fd, size).await;
        };
        let current = HostDescriptor::stat(&mut self.fs, borrow(&fd)).await?.size;
        let growth = size.saturating_sub(current);
        if !quota.charge(growth) {
            return Err(ErrorCode::InsufficientSpace.into());
        }
        let result = HostDescriptor::set_size(&mut self.fs, fd, size).await;
        if result.is_err() {
            quota.refund(growth);
        }
        result
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times(&mut self.fs, fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        HostDescriptor::read(&mut self.fs, fd, len, offset).await
    }

    /// Charged in full before writing (an overwrite counts too).
    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        let Some(quota) = self.guard.quota_of(fd.rep()) else {
            return HostDescriptor::write(&mut self.fs, fd, buf, offset).await;
        };
        let wanted = buf.len() as u64;
        if !quota.charge(wanted) {
            return Err(ErrorCode::InsufficientSpace.into());
        }
        let result = HostDescriptor::write(&mut self.fs, fd, buf, offset).await;
        match &result {
            Ok(written) => quota.refund(wanted.saturating_sub(*written)),
            Err(_) => quota.refund(wanted),
        }
        result
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        HostDescriptor::read_directory(&mut self.fs, fd).await
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        HostDescriptor::sync(&mut self.fs, fd).await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        let Some(quota) = self.guard.quota_of(fd.rep()) else {
            return HostDescriptor::create_directory_at(&mut self.fs, fd, path).await;
        };
        if !quota.charge(ENTRY_COST_BYTES) {
            return Err(ErrorCode::InsufficientSpace.into());
        }
        let result = HostDescriptor::create_directory_at(&mut self.fs, fd, path).await;
        if result.is_err() {
            quota.refund(ENTRY_COST_BYTES);
        }
        result
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        HostDescriptor::stat(&mut self.fs, fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        HostDescriptor::stat_at(&mut self.fs, fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times_at(&mut self.fs, fd, path_flags, path, atim, mtim).await
    }

    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        HostDescriptor::link_at(
            &mut self.fs,
            fd,
            old_path_flags,
            old_path,
            new_descriptor,
            new_path,
        )
        .await
    }

    /// Counted against [`MAX_OPEN_DESCRIPTORS`]; a created file is charged
    /// [`ENTRY_COST_BYTES`] to the quota.
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        if self.guard.open >= MAX_OPEN_DESCRIPTORS {
            return Err(ErrorCode::Quota.into());
        }
        let parent = fd.rep();
        let grant = self.guard.grant_of.get(&parent).copied();
        let quota = self.guard.quota_of(parent);
        let mut charged = 0;
        if let Some(quota) = &quota {
            if oflags.contains(types::OpenFlags::CREATE) {
                let exists =
                    HostDescriptor::stat_at(&mut self.fs, borrow(&fd), path_flags, path.clone())
                        .await
                        .is_ok();
                if !exists {
                    if !quota.charge(ENTRY_COST_BYTES) {
                        return Err(ErrorCode::InsufficientSpace.into());
                    }
                    charged = ENTRY_COST_BYTES;
                }
            }
        }
        match HostDescriptor::open_at(&mut self.fs, fd, path_flags, path, oflags, flags).await {
            Ok(child) => {
                self.guard.open += 1;
                if let Some(grant) = grant {
                    self.guard.grant_of.insert(child.rep(), grant);
                }
                Ok(child)
            }
            Err(err) => {
                if let Some(quota) = &quota {
                    quota.refund(charged);
                }
                Err(err)
            }
        }
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        let rep = fd.rep();
        HostDescriptor::drop(&mut self.fs, fd)?;
        self.guard.grant_of.remove(&rep);
        self.guard.open = self.guard.open.saturating_sub(1);
        Ok(())
    }

    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        HostDescriptor::readlink_at(&mut self.fs, fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        HostDescriptor::remove_directory_at(&mut self.fs, fd, path).await
    }

    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        HostDescriptor::rename_at(&mut self.fs, fd, old_path, new_fd, new_path).await
    }

    /// Refused: a link is only a name, but one pointing out of the
    /// directory (relative or absolute) is followed by any host tool that
    /// later reads the directory.
    async fn symlink_at(
        &mut self,
        _fd: Resource<types::Descriptor>,
        _src_path: String,
        _dest_path: String,
    ) -> FsResult<()> {
        Err(ErrorCode::NotPermitted.into())
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        HostDescriptor::unlink_file_at(&mut self.fs, fd, path).await
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynInputStream>> {
        HostDescriptor::read_via_stream(&mut self.fs, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let quota = self.guard.quota_of(fd.rep());
        let stream = HostDescriptor::write_via_stream(&mut self.fs, fd, offset)?;
        self.with_quota(stream, quota)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let quota = self.guard.quota_of(fd.rep());
        let stream = HostDescriptor::append_via_stream(&mut self.fs, fd)?;
        self.with_quota(stream, quota)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        HostDescriptor::is_same_object(&mut self.fs, a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        HostDescriptor::metadata_hash(&mut self.fs, fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        HostDescriptor::metadata_hash_at(&mut self.fs, fd, path_flags, path).await
    }
}

impl FsGuardView<'_> {
    /// Puts `stream` back in the table behind a [`QuotaStream`] when the
    /// descriptor's grant has a quota.
    fn with_quota(
        &mut self,
        stream: Resource<DynOutputStream>,
        quota: Option<Arc<Quota>>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let Some(quota) = quota else {
            return Ok(stream);
        };
        let inner = self.fs.table.delete(stream)?;
        let wrapped: DynOutputStream = Box::new(QuotaStream { inner, quota });
        Ok(self.fs.table.push(wrapped)?)
    }
}

/// A file output stream whose writes are charged to a quota first.
struct QuotaStream {
    inner: DynOutputStream,
    quota: Arc<Quota>,
}

fn stream_no_space() -> StreamError {
    // As wasmtime-wasi's own file streams build theirs, so that
    // `filesystem-error-code` finds the `io::Error` (and its errno).
    StreamError::LastOperationFailed(no_space().into())
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        if !self.quota.charge(bytes.len() as u64) {
            return Err(stream_no_space());
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    /// At most what the quota has left; an error once nothing is left (a
    /// permit of 0 would make the guest wait forever).
    fn check_write(&mut self) -> StreamResult<usize> {
        let permit = self.inner.check_write()?;
        match self.quota.remaining() {
            0 => Err(stream_no_space()),
            left => Ok(permit.min(usize::try_from(left).unwrap_or(usize::MAX))),
        }
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
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
                let quota = dir
                    .quota
                    .as_ref()
                    .map(|q| format!(", quota {} bytes", q.limit))
                    .unwrap_or_default();
                format!(
                    "files: {} as {} ({access}{quota})",
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
    let quota =
        match (grant.quota_bytes, grant.access) {
            (None, _) => None,
            (Some(_), FileAccess::ReadOnly) => return Err(GrantError {
                location: format!("files[{index}].quota_bytes"),
                message:
                    "a quota needs `access: read-write` (a read-only directory is never written)"
                        .into(),
            }),
            (Some(limit), FileAccess::ReadWrite) => {
                Some(Arc::new(Quota::new(limit, usage(&host_path))))
            }
        };
    Ok(PreparedDir {
        host_path,
        guest_path: grant.guest_path.clone(),
        access: grant.access,
        index,
        quota,
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
            quota_bytes: None,
        }
    }

    #[test]
    fn a_quota_counts_existing_usage_and_never_goes_past_its_limit() {
        let temp = tempfile::tempdir().expect("tempdir");
        std::fs::write(temp.path().join("old"), vec![0u8; 10_000]).expect("write");
        let mut g = grant(temp.path().to_path_buf(), FileAccess::ReadWrite);
        g.quota_bytes = Some(20_000);
        let files = Files::prepare(&[g]).expect("prepared");
        let quota = files.dirs[0].quota.clone().expect("quota");
        assert_eq!(quota.remaining(), 10_000);
        assert!(quota.charge(6_000));
        assert!(!quota.charge(6_000), "past the limit: nothing taken");
        assert_eq!(quota.remaining(), 4_000);
        assert!(quota.charge(4_000));
        assert!(!quota.charge(1));
        assert!(!quota.charge(u64::MAX), "no overflow");
        assert!(files.describe()[0].ends_with("quota 20000 bytes)"));
    }

    #[test]
    fn a_quota_on_a_read_only_grant_is_refused() {
        let temp = tempfile::tempdir().expect("tempdir");
        let mut g = grant(temp.path().to_path_buf(), FileAccess::ReadOnly);
        g.quota_bytes = Some(1);
        let err = Files::prepare(&[g]).expect_err("read-only quota");
        assert!(err.to_string().contains("files[0].quota_bytes"), "{err}");
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
