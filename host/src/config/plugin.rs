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
    /// Origins the plugin may send HTTP requests to (through `wasi:http`).
    #[serde(default)]
    pub http: Vec<HttpGrant>,
    /// Database connections the plugin may use through the `sql` interface.
    #[serde(default)]
    pub sql: Vec<super::SqlGrant>,
}

/// Default per-request deadline of an HTTP grant.
const DEFAULT_HTTP_TIMEOUT_MS: u64 = 30_000;
/// Default request and response body limit of an HTTP grant: large enough
/// for a batch of ordinary events, small enough that one plugin cannot make
/// the host buffer gigabytes.
const DEFAULT_HTTP_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of requests to one origin in flight at once.
const DEFAULT_HTTP_CONCURRENCY: u32 = 16;
/// Upper bound of a body limit: the host buffers request bodies (to sign
/// them), so a limit above this is a typo, not a plan.
const MAX_HTTP_BODY_BYTES: u64 = 1024 * 1024 * 1024;

/// One origin the plugin may reach, and how the host authenticates the
/// plugin's requests to it. Secrets are named by environment variable and
/// read by the host; the plugin never sees them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpGrant {
    /// `scheme://host[:port]`, e.g. `https://api.example.com` or
    /// `http://127.0.0.1:8333`. Scheme, host and port must match exactly
    /// (default port 80 or 443); a host written `*.example.com` matches any
    /// name under `example.com`.
    pub origin: String,
    /// Credentials the host adds to every request to this origin.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    /// Deadline of one request, from the hook to the last byte of the
    /// response body, in milliseconds.
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest request body the plugin may send.
    #[serde(default = "default_http_body_bytes")]
    pub max_request_body_bytes: u64,
    /// Largest response body the plugin may receive.
    #[serde(default = "default_http_body_bytes")]
    pub max_response_body_bytes: u64,
    /// Requests to this origin in flight at once; more wait for a slot.
    #[serde(default = "default_http_concurrency")]
    pub max_concurrent_requests: u32,
    /// Addresses the origin's name may resolve to even though they are not
    /// public (loopback, private, CGNAT, link-local, cloud-metadata and
    /// every other IANA special-purpose address: refused otherwise).
    #[serde(default)]
    pub allowed_addresses: Vec<std::net::IpAddr>,
    /// Lets `auth` credentials go to a plain `http://` origin, in clear
    /// text. Off by default: such a grant is refused at load.
    #[serde(default)]
    pub allow_plaintext_credentials: bool,
}

fn default_http_timeout_ms() -> u64 {
    DEFAULT_HTTP_TIMEOUT_MS
}
fn default_http_body_bytes() -> u64 {
    DEFAULT_HTTP_BODY_BYTES
}
fn default_http_concurrency() -> u32 {
    DEFAULT_HTTP_CONCURRENCY
}

/// How the host authenticates requests to a granted origin. Every field
/// ending in `_env` names an environment variable of the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    /// `Authorization: Bearer <token>`.
    BearerEnv(String),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// Variable holding the user name.
        user_env: String,
        /// Variable holding the password.
        password_env: String,
    },
    /// One header with a secret value, e.g. `X-Api-Key`.
    Header {
        /// Header name.
        name: String,
        /// Variable holding the value.
        value_env: String,
    },
    /// AWS Signature Version 4 over the request and its body (S3 and other
    /// AWS-compatible services).
    AwsSigv4 {
        /// Signing region, e.g. `us-east-1`.
        region: String,
        /// Signing service name, e.g. `s3`.
        service: String,
        /// Variable holding the access key id.
        access_key_id_env: String,
        /// Variable holding the secret access key.
        secret_access_key_env: String,
        /// Variable holding a session token (temporary credentials).
        #[serde(default)]
        session_token_env: Option<String>,
    },
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
    /// Most bytes the directory may hold (`read-write` only): its usage
    /// when the plugin is loaded plus every byte the plugin writes or
    /// grows a file by, never credited back. A write past it fails with
    /// `insufficient-space`. None: no quota (the host's disk is the limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
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
                return Err(Invalid::new(
                    format!("{location}.host_path"),
                    "must not be empty",
                ));
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
        for (index, grant) in self.grants.http.iter().enumerate() {
            grant.validate(&format!("plugin.grants.http[{index}]"))?;
        }
        super::sql::validate_grants(&self.grants.sql)?;
        let limits = &self.limits;
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&limits.memory_mb) {
            return Err(Invalid::new(
                "plugin.limits.memory_mb",
                format!("must be between {MIN_MEMORY_MB} and {MAX_MEMORY_MB}"),
            ));
        }
        if limits.call_timeout_ms == 0 {
            return Err(Invalid::new(
                "plugin.limits.call_timeout_ms",
                "must be at least 1",
            ));
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

impl HttpGrant {
    fn validate(&self, location: &str) -> Result<(), Invalid> {
        let origin = crate::capabilities::http::Origin::parse(&self.origin)
            .map_err(|message| Invalid::new(format!("{location}.origin"), message))?;
        crate::capabilities::http::check_plaintext_credentials(&origin, self)
            .map_err(|message| Invalid::new(format!("{location}.auth"), message))?;
        if self.timeout_ms == 0 {
            return Err(Invalid::new(
                format!("{location}.timeout_ms"),
                "must be at least 1",
            ));
        }
        for (field, value) in [
            ("max_request_body_bytes", self.max_request_body_bytes),
            ("max_response_body_bytes", self.max_response_body_bytes),
        ] {
            if !(1..=MAX_HTTP_BODY_BYTES).contains(&value) {
                return Err(Invalid::new(
                    format!("{location}.{field}"),
                    format!("must be between 1 and {MAX_HTTP_BODY_BYTES}"),
                ));
            }
        }
        if self.max_concurrent_requests == 0 {
            return Err(Invalid::new(
                format!("{location}.max_concurrent_requests"),
                "must be at least 1",
            ));
        }
        if let Some(HttpAuth::Header { name, .. }) = &self.auth {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Invalid::new(
                    format!("{location}.auth.header.name"),
                    "is not a valid HTTP header name",
                ));
            }
        }
        Ok(())
    }
}
