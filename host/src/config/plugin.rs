//! The `plugin` section: which component runs, what it is granted, and its
//! resource limits. Everything is denied unless granted here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Smallest memory limit that lets a realistic guest start at all.
const MIN_MEMORY_MB: u64 = 2;
/// Memory per instance above this is almost certainly a typo.
const MAX_MEMORY_MB: u64 = 64 * 1024;

/// The sink component and its sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Path of the component (`.wasm`). `sinkhost run --plugin` overrides it.
    pub path: PathBuf,
    /// Capabilities granted to the plugin. Nothing else is reachable.
    #[serde(default)]
    pub grants: Grants,
    /// Resource limits per plugin instance.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Where precompiled components are cached. Default:
    /// `$SINKHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/sinkhost`, else
    /// `~/.cache/sinkhost`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

/// Capabilities the operator grants to the plugin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Host directories preopened for the plugin.
    #[serde(default)]
    pub files: Vec<FileGrant>,
}

/// One host directory made visible to the plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGrant {
    /// Directory on the host. A `read-write` directory is created when missing.
    pub host_path: PathBuf,
    /// Absolute path under which the plugin sees it, e.g. `/out`.
    pub guest_path: String,
    /// `read-only` or `read-write`.
    #[serde(default)]
    pub access: FileAccess,
}

/// Access to a granted directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileAccess {
    /// List and read files only.
    #[default]
    ReadOnly,
    /// Read, create, write, rename and remove files and directories.
    ReadWrite,
}

/// Per-instance resource limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    /// Linear memory the instance may grow to, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
    /// Deadline of one `write-batch` (or `init`) call; the call traps after it.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Delay before a replacement instance is used after a plugin failure;
    /// doubles with each consecutive failure up to `failure_backoff_max_ms`.
    #[serde(default = "default_failure_backoff_ms")]
    pub failure_backoff_ms: u64,
    /// Upper bound of that delay.
    #[serde(default = "default_failure_backoff_max_ms")]
    pub failure_backoff_max_ms: u64,
}

fn default_memory_mb() -> u64 {
    64
}
fn default_call_timeout_ms() -> u64 {
    10_000
}
fn default_failure_backoff_ms() -> u64 {
    200
}
fn default_failure_backoff_max_ms() -> u64 {
    30_000
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_mb: default_memory_mb(),
            call_timeout_ms: default_call_timeout_ms(),
            failure_backoff_ms: default_failure_backoff_ms(),
            failure_backoff_max_ms: default_failure_backoff_max_ms(),
        }
    }
}

impl PluginConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new("plugin.path", "must not be empty"));
        }
        let mut seen_guest_paths = std::collections::HashSet::new();
        for (index, grant) in self.grants.files.iter().enumerate() {
            let location = format!("plugin.grants.files[{index}]");
            if grant.host_path.as_os_str().is_empty() {
                return Err(Invalid::new(format!("{location}.host_path"), "must not be empty"));
            }
            let guest = grant.guest_path.as_str();
            if !guest.starts_with('/') || guest.split('/').any(|part| part == "..") {
                return Err(Invalid::new(
                    format!("{location}.guest_path"),
                    "must be an absolute guest path without `..`, e.g. `/out`",
                ));
            }
            if !seen_guest_paths.insert(guest.trim_end_matches('/').to_string()) {
                return Err(Invalid::new(
                    format!("{location}.guest_path"),
                    "is granted twice",
                ));
            }
        }
        let limits = &self.limits;
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&limits.memory_mb) {
            return Err(Invalid::new(
                "plugin.limits.memory_mb",
                format!("must be between {MIN_MEMORY_MB} and {MAX_MEMORY_MB}"),
            ));
        }
        if limits.call_timeout_ms == 0 {
            return Err(Invalid::new("plugin.limits.call_timeout_ms", "must be at least 1"));
        }
        if limits.failure_backoff_max_ms < limits.failure_backoff_ms {
            return Err(Invalid::new(
                "plugin.limits.failure_backoff_max_ms",
                "must be at least failure_backoff_ms",
            ));
        }
        Ok(())
    }
}
