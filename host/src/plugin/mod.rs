//! The plugin runtime: loads a sink component, sandboxes it, and calls it.
//!
//! - [`PluginHost::load`] reads the component, checks it is a sinkhost sink
//!   of a supported WIT version that imports nothing the host does not
//!   provide, and compiles it (or loads it from the precompiled cache).
//! - [`PluginHost::pool`] hands out instances for concurrent batches; each
//!   instance is its own wasmtime `Store` with its own WASI context (only the
//!   granted directories), memory limit and per-call deadline.
//! - A trap, timeout or memory failure is a [`PluginFault`]: the instance is
//!   dropped (a trapped Store is unusable), a fresh one is built for the next
//!   batch after a backoff, and the caller leaves the batch unACKed.
//!
//! Errors the plugin *reports* ([`SinkError`]) are kept apart from faults of
//! the plugin itself ([`PluginFault`]).

pub(crate) mod cache;
mod engine;
mod inspect;
mod pool;
mod state;
mod v0_1;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;

use crate::capabilities::{
    import_need, Capability as _, GrantError, Http, ImportNeed, PreparedGrants,
};
use crate::config::{PluginConfig, PluginLimits};
use crate::envelope::Envelope;
use crate::manifest::{GrantKind, Manifest, ManifestProblem};

pub use cache::CacheOutcome;
pub use engine::{DEADLINE_GRACE, EPOCH_TICK};
pub use inspect::{inspect, inspect_with_cache, ImportReport, Inspection};
pub use pool::SinkPool;
pub use state::{MAX_INSTANCES, MAX_LOG_LINE_BYTES, MAX_OUTPUT_BYTES_PER_CALL};

use state::{LogLevel, LogOutput, PluginLog, StoreState};

/// Prefix of the export every sink provides; the version follows the `@`.
pub const SINK_EXPORT_PREFIX: &str = "sinkhost:sink/sink@";
/// WIT versions this host can run, newest first. A plugin built against any
/// semver-compatible version (same `0.minor`, or same major from 1.0) runs.
pub const SUPPORTED_VERSIONS: &[&str] = &[v0_1::VERSION];
/// Longest fault message kept (wasmtime errors can carry long backtraces).
const MAX_FAULT_MESSAGE_BYTES: usize = 1_000;
/// How wasmtime's `WasmBacktrace` context starts: left out of fault
/// messages (it is long, and the guest's own panic message is in the log).
const WASM_BACKTRACE_HEADER: &str = "error while executing at wasm backtrace";
/// Bytes in a MiB, for `memory_mb`.
const MIB: u64 = 1024 * 1024;

/// Whether retrying can help, as the sink reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retry later.
    Transient,
    /// Can never succeed: dead-letter.
    Permanent,
}

/// An error the sink reported (guest-visible, not a fault).
#[derive(Debug, Clone)]
pub struct SinkError {
    /// Transient or permanent.
    pub kind: ErrorKind,
    /// The sink's message (no payloads or secrets, by contract).
    pub message: String,
}

/// One message of a batch that the sink did not store.
#[derive(Debug, Clone)]
pub struct MessageFailure {
    /// Index in the batch (checked to be in range and unique).
    pub index: usize,
    /// Why.
    pub error: SinkError,
}

/// What a `write-batch` call reported.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// Every message not listed in `failures` was stored durably.
    Stored {
        /// The messages that were not stored.
        failures: Vec<MessageFailure>,
    },
    /// The sink failed the whole batch.
    Failed(SinkError),
}

/// A failure of the plugin itself. The instance that failed has been
/// discarded; the batch must not be ACKed.
#[derive(Debug, thiserror::Error)]
pub enum PluginFault {
    /// The call ran past `plugin.limits.call_timeout_ms`.
    #[error("plugin call timed out: deadline of {after_ms} ms exceeded")]
    Timeout {
        /// The deadline.
        after_ms: u64,
    },
    /// The plugin tried to grow past `plugin.limits.memory_mb`.
    #[error("plugin exceeded its memory limit of {limit_mb} MiB")]
    MemoryLimit {
        /// The limit.
        limit_mb: u64,
    },
    /// The plugin trapped (panic, unreachable, bad memory access...).
    #[error("plugin trapped: {message}")]
    Trap {
        /// wasmtime's description of the trap.
        message: String,
    },
    /// A new instance could not be created or refused its configuration.
    #[error("plugin instance could not start: {message}")]
    Init {
        /// What went wrong.
        message: String,
    },
    /// The plugin answered something the contract does not allow.
    #[error("plugin broke the sink contract: {message}")]
    Protocol {
        /// What it did.
        message: String,
    },
}

/// Why a plugin cannot be loaded. One line, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    /// The trust policy refuses it (unsigned, unknown key, tampered...).
    #[error("{0}")]
    Untrusted(#[from] crate::signing::SignatureError),
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not WebAssembly, or a core module rather than a component.
    #[error("{path} is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// wasmtime could not compile it.
    #[error("cannot compile plugin {path}: {message}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// wasmtime's message.
        message: String,
    },
    /// A component, but not a sink.
    #[error("{path} is not a sinkhost sink: it exports [{exports}]; expected {expected}")]
    NotASink {
        /// The file.
        path: PathBuf,
        /// What it exports instead.
        exports: String,
        /// The exports this host accepts, e.g. `sinkhost:sink/sink@0.1.x`.
        expected: String,
    },
    /// A sink of a WIT version this host does not support.
    #[error("{path} is a sink for WIT version {version}, which this sinkhost does not support (supported: {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: String,
        /// What is supported.
        supported: String,
    },
    /// It imports something the host does not provide.
    #[error("{path} imports `{import}`: {need}")]
    UnsupportedImport {
        /// The file.
        path: PathBuf,
        /// The import.
        import: String,
        /// Why it cannot be provided (and which grant it would need).
        need: ImportNeed,
    },
    /// It imports an interface that only works with a grant the operator
    /// did not give.
    #[error("{path} imports `{import}`, which needs `plugin.grants.{grant}`; the config grants none (see docs/capabilities.md)")]
    MissingGrant {
        /// The file.
        path: PathBuf,
        /// The import.
        import: String,
        /// The grant it needs.
        grant: &'static str,
    },
    /// A grant cannot be honoured on this host.
    #[error("{0}")]
    Grant(#[from] GrantError),
    /// The embedded manifest is invalid, or the component, the operator's
    /// grants or the `sink` section disagree with it (docs/plugin-manifest.md).
    #[error("{path}: {problem}")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What does not agree, and with what.
        problem: ManifestProblem,
    },
    /// The engine could not be set up or the component could not be linked
    /// against the host's imports of its WIT version.
    #[error("cannot prepare plugin {path}: {message}")]
    Link {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// What was loaded, for logs and `sinkhost validate`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginDescription {
    /// The component file.
    pub path: PathBuf,
    /// sha256 of the component bytes (hex): the plugin's identity.
    pub digest: String,
    /// The WIT version of its `sink` export, e.g. `0.1.0`.
    pub wit_version: String,
    /// Whether it came from the precompiled cache.
    pub cache: CacheOutcome,
    /// Milliseconds spent reading, checking and compiling or loading it.
    pub load_ms: u64,
    /// `name version by publisher` from its embedded manifest, if any.
    pub manifest: Option<String>,
    /// What the load accepted but the operator should fix (no manifest, a
    /// grant the manifest does not ask for); also logged as warnings.
    pub warnings: Vec<String>,
}

impl std::fmt::Display for PluginDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (sinkhost:sink@{}, sha256 {})",
            self.path.display(),
            self.wit_version,
            self.digest
        )
    }
}

/// The pre-linked component, by WIT version.
#[derive(Clone)]
enum Prepared {
    V0_1(v0_1::Prepared),
}

/// The exports of one instance, by WIT version.
enum Bindings {
    V0_1(v0_1::Bindings),
}

struct Inner {
    engine: Engine,
    prepared: Prepared,
    grants: PreparedGrants,
    limits: PluginLimits,
    sink_config: String,
    name: Arc<str>,
    description: PluginDescription,
}

/// A loaded, checked, compiled sink component: the engine (with its epoch
/// ticker), the pre-linked component and the sandbox settings. Cheap to
/// clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugin", &self.inner.description)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Compiles the component, or loads it precompiled from the cache; checks
    /// its world, version and imports, and the operator's grants.
    pub fn load(
        config: &PluginConfig,
        sink_config: &serde_json::Value,
    ) -> Result<Self, PluginLoadError> {
        Self::load_trusted(config, sink_config, None)
    }

    /// [`PluginHost::load`] under the operator's trust policy: the
    /// signature is checked against the very bytes that are then compiled,
    /// and the manifest embedded in those bytes is checked against the
    /// component's imports and WIT version, the operator's grants and the
    /// `sink` section (a plugin without a manifest loads with a warning).
    pub fn load_trusted(
        config: &PluginConfig,
        sink_config: &serde_json::Value,
        trust: Option<&crate::config::TrustConfig>,
    ) -> Result<Self, PluginLoadError> {
        let path = config.path.clone();
        let started = Instant::now();
        let bytes = read_component(&path)?;
        match crate::signing::check_trust(trust, &path, &bytes)? {
            crate::signing::TrustDecision::Trusted {
                publisher,
                certifier,
            } => tracing::info!(
                plugin = %path.display(),
                publisher = publisher.as_deref().unwrap_or("-"),
                certifier = certifier.as_deref().unwrap_or("-"),
                "plugin accepted by the trust policy"
            ),
            crate::signing::TrustDecision::NotRequired => tracing::warn!(
                plugin = %path.display(),
                "no trust policy requires a signature: this plugin's publisher is not verified (see docs/plugin-signing.md)"
            ),
        }
        let grants = PreparedGrants::prepare(&config.grants)?;
        let digest = cache::sha256_hex(&bytes);
        let engine = engine::build().map_err(|err| link_error(&path, &err))?;
        let cache_dir = config.cache_dir.clone().or_else(cache::default_dir);
        let (component, cache) = compile(&path, &engine, &bytes, &digest, cache_dir.as_deref())?;
        // After compiling: bytes that are not a component are reported as
        // such, not as an unreadable manifest section.
        let manifest = read_manifest(&path, &bytes)?;
        let version = sink_version(&path, &engine, &component)?;
        check_imports(&path, &engine, &component, Some(&grants))?;
        let warnings = check_manifest(
            &path,
            manifest.as_ref(),
            &ComponentFacts::of(&engine, &component, &version),
            &grants,
            sink_config,
        )?;
        let prepared =
            prepare(&engine, &component, &version).map_err(|err| link_error(&path, &err))?;
        let description = PluginDescription {
            path: path.clone(),
            digest,
            wit_version: version,
            cache,
            load_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            manifest: manifest.as_ref().map(|manifest| {
                format!(
                    "{} {} by {}",
                    manifest.name, manifest.version, manifest.publisher
                )
            }),
            warnings,
        };
        tracing::info!(
            plugin = %description,
            cache = ?description.cache,
            load_ms = description.load_ms,
            grants = ?grants.describe(),
            memory_mb = config.limits.memory_mb,
            call_timeout_ms = config.limits.call_timeout_ms,
            deadline_ticks = engine::ticks_for(Duration::from_millis(config.limits.call_timeout_ms)),
            "plugin loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                prepared,
                grants,
                limits: config.limits.clone(),
                sink_config: sink_config.to_string(),
                name: plugin_name(&path),
                description,
            }),
        })
    }

    /// Instantiates once and calls `init` with the sink config (what
    /// `sinkhost validate` uses). A refused config is
    /// `Err(PluginFault::Init)` carrying the plugin's message.
    pub async fn check_init(&self) -> Result<(), PluginFault> {
        let started = Instant::now();
        self.new_instance().await?;
        tracing::debug!(
            plugin = %self.inner.name,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "plugin instance created and initialised"
        );
        Ok(())
    }

    /// Connects once to every granted database (`sinkhost validate`):
    /// per grant name, the error when it cannot.
    pub async fn check_sql_connections(
        &self,
    ) -> Vec<(String, Result<(), crate::capabilities::sql::SqlError>)> {
        self.inner.grants.sql().check_connections().await
    }

    /// A pool of up to `size` instances (at least one) for concurrent
    /// batches.
    pub fn pool(&self, size: usize) -> SinkPool {
        SinkPool::new(self.clone(), size)
    }

    /// WIT version, path and digest, for logs.
    pub fn describe(&self) -> PluginDescription {
        self.inner.description.clone()
    }

    /// What the host refused this plugin so far (requests outside its
    /// `http` grant, statements outside its `sql` grant), over all its
    /// instances.
    pub fn refusals(&self) -> (u64, Vec<crate::capabilities::Refusal>) {
        self.inner.grants.refusals().snapshot()
    }

    /// The plugin's name in logs (the file name without `.wasm`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A new instance: a fresh Store with its own WASI context, limits and
    /// deadline, instantiated and initialised.
    async fn new_instance(&self) -> Result<Instance, PluginFault> {
        let mut store = self.new_store()?;
        let bindings = match &self.inner.prepared {
            Prepared::V0_1(prepared) => {
                let deadline = self.start_call(&mut store);
                let result = tokio::time::timeout(deadline, prepared.instantiate(&mut store)).await;
                self.settle(&store, result).map(Bindings::V0_1)
            }
        }
        .map_err(|fault| match fault {
            PluginFault::Trap { message } => PluginFault::Init {
                message: format!("cannot instantiate the plugin: {message}"),
            },
            other => other,
        })?;
        let config = self.inner.sink_config.as_str();
        let answer = match &bindings {
            Bindings::V0_1(bindings) => {
                let deadline = self.start_call(&mut store);
                let result =
                    tokio::time::timeout(deadline, bindings.init(&mut store, config)).await;
                store.data_mut().end_sql_transactions().await;
                self.settle(&store, result)?
            }
        };
        match answer {
            Ok(()) => Ok(Instance { store, bindings }),
            Err(message) => Err(PluginFault::Init {
                message: format!(
                    "the plugin rejected its `sink` config: {}",
                    state::clean_message(&one_line(&message))
                ),
            }),
        }
    }

    /// A Store whose WASI context holds only the granted capabilities.
    fn new_store(&self) -> Result<Store<StoreState>, PluginFault> {
        let inner = &self.inner;
        let log = PluginLog::new(Arc::clone(&inner.name));
        let mut wasi = WasiCtxBuilder::new();
        // Deny by default: the builder starts with no environment, no
        // arguments, no preopens and a closed stdin. Say the network part
        // out loud so a wasmtime default change cannot open it.
        wasi.stdout(LogOutput::new(log.clone(), "stdout", LogLevel::Info))
            .stderr(LogOutput::new(log.clone(), "stderr", LogLevel::Warn))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            // File operations run on the calling thread instead of a
            // `spawn_blocking` round trip each: a per-message file sink makes
            // several small calls per message, and the hop dominated (3x).
            .allow_blocking_current_thread(true);
        inner
            .grants
            .apply(&mut wasi)
            .map_err(|err| PluginFault::Init {
                message: err.to_string(),
            })?;
        let memory_bytes =
            usize::try_from(inner.limits.memory_mb.saturating_mul(MIB)).unwrap_or(usize::MAX);
        let state =
            StoreState::with_http(wasi.build(), inner.grants.http_hooks(), memory_bytes, log)
                .with_sql(inner.grants.sql().clone().with_query_bytes(memory_bytes))
                .with_files(inner.grants.files().guard());
        let mut store = Store::new(&inner.engine, state);
        store.set_hostcall_fuel(state::hostcall_fuel(memory_bytes));
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|mut context| Ok(context.data_mut().deadline.on_tick()));
        Ok(store)
    }

    /// Writes a batch on `instance`. Any error means the instance is dead.
    async fn write_batch(
        &self,
        instance: &mut Instance,
        batch: &[Envelope],
    ) -> Result<WriteOutcome, PluginFault> {
        let Instance { store, bindings } = instance;
        match bindings {
            Bindings::V0_1(bindings) => {
                let deadline = self.start_call(store);
                let result =
                    tokio::time::timeout(deadline, bindings.write_batch(store, batch)).await;
                // Whatever the outcome: no transaction outlives the call.
                store.data_mut().end_sql_transactions().await;
                self.settle(store, result)?
            }
        }
    }

    /// Arms the deadline before a call into the plugin: the epoch interrupt
    /// fires `call_timeout_ms` from now (checked at every
    /// [`EPOCH_TICK`]). Returns the wall-clock backstop for
    /// `tokio::time::timeout`, [`DEADLINE_GRACE`] later, which catches a call
    /// parked in an async host call, where epochs are not checked. When the
    /// backstop fires, `timeout` drops the call's future, which unwinds the
    /// plugin's stack; the caller then discards the Store.
    fn start_call(&self, store: &mut Store<StoreState>) -> Duration {
        let timeout = Duration::from_millis(self.inner.limits.call_timeout_ms);
        store.data_mut().start_call(timeout);
        store.set_epoch_deadline(1);
        timeout + DEADLINE_GRACE
    }

    /// The result of a bounded call, with errors classified.
    fn settle<T>(
        &self,
        store: &Store<StoreState>,
        result: Result<wasmtime::Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, PluginFault> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(&self.inner.limits, store.data(), &err)),
            Err(_elapsed) => Err(PluginFault::Timeout {
                after_ms: self.inner.limits.call_timeout_ms,
            }),
        }
    }
}

/// Turns a wasmtime error into the fault it really is, from the trap and
/// what the store recorded (a refused grow, an expired deadline).
fn classify(limits: &PluginLimits, state: &StoreState, err: &wasmtime::Error) -> PluginFault {
    if state.limiter.refused {
        return PluginFault::MemoryLimit {
            limit_mb: limits.memory_mb,
        };
    }
    if state.deadline.expired || err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return PluginFault::Timeout {
            after_ms: limits.call_timeout_ms,
        };
    }
    PluginFault::Trap {
        message: fault_message(err),
    }
}

/// One plugin instance: its own Store and exports.
struct Instance {
    store: Store<StoreState>,
    bindings: Bindings,
}

/// The plugin's name in logs: the file name without its extension.
fn plugin_name(path: &Path) -> Arc<str> {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string())
        .into()
}

/// Reads the file and checks it is a component (not a core module).
fn read_component(path: &Path) -> Result<Vec<u8>, PluginLoadError> {
    let bytes = std::fs::read(path).map_err(|source| PluginLoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_component_header(path, &bytes)?;
    Ok(bytes)
}

/// The manifest embedded in the component's bytes, if any; an embedded
/// manifest that is not valid refuses the plugin.
fn read_manifest(path: &Path, bytes: &[u8]) -> Result<Option<Manifest>, PluginLoadError> {
    Manifest::from_component(bytes).map_err(|err| PluginLoadError::Manifest {
        path: path.to_path_buf(),
        problem: ManifestProblem::Invalid(err),
    })
}

/// What the manifest is checked against: the real sink export version and
/// the real imports of the compiled component.
struct ComponentFacts {
    sink_version: String,
    imports: Vec<String>,
}

impl ComponentFacts {
    fn of(engine: &Engine, component: &Component, sink_version: &str) -> Self {
        Self {
            sink_version: sink_version.to_string(),
            imports: component
                .component_type()
                .imports(engine)
                .map(|(name, _)| name.to_string())
                .collect(),
        }
    }
}

/// Checks the manifest against the component, the operator's grants and
/// the `sink` section (see [`crate::manifest`]). Returns the warnings, each
/// also logged: no manifest, or a grant given that the manifest does not
/// declare.
fn check_manifest(
    path: &Path,
    manifest: Option<&Manifest>,
    facts: &ComponentFacts,
    grants: &PreparedGrants,
    sink_config: &serde_json::Value,
) -> Result<Vec<String>, PluginLoadError> {
    let Some(manifest) = manifest else {
        let warning = format!(
            "{} has no embedded manifest (`{}` section): its imports, the grants and the `sink` section are not checked against a declaration (see docs/plugin-manifest.md)",
            path.display(),
            crate::manifest::MANIFEST_SECTION
        );
        tracing::warn!(plugin = %path.display(), "{warning}");
        return Ok(vec![warning]);
    };
    let refused = |problem: ManifestProblem| PluginLoadError::Manifest {
        path: path.to_path_buf(),
        problem,
    };
    manifest.check_world(&facts.sink_version).map_err(refused)?;
    manifest
        .check_imports(facts.imports.iter().map(String::as_str))
        .map_err(refused)?;
    let warnings = manifest
        .check_grants(|kind: GrantKind| grants.has(kind.as_str()))
        .map_err(refused)?;
    manifest.check_sink_config(sink_config).map_err(refused)?;
    for warning in &warnings {
        tracing::warn!(plugin = %path.display(), "{warning}");
    }
    Ok(warnings)
}

/// Compiles the component or loads it from the cache.
fn compile(
    path: &Path,
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
    cache_dir: Option<&Path>,
) -> Result<(Component, CacheOutcome), PluginLoadError> {
    cache::load_or_compile(engine, bytes, digest, cache_dir).map_err(|err| {
        PluginLoadError::Compile {
            path: path.to_path_buf(),
            message: fault_message(&err),
        }
    })
}

/// Component binary: `\0asm`, then version 0x0d and layer 1.
fn check_component_header(path: &Path, bytes: &[u8]) -> Result<(), PluginLoadError> {
    let not_a_component = |reason: &str| PluginLoadError::NotAComponent {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not_a_component(
            "the file does not start with the WebAssembly magic bytes",
        ));
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(not_a_component(
            "it is a core WebAssembly module; build the sink for wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
        )),
        _ => Err(not_a_component("unknown WebAssembly version or layer")),
    }
}

/// What a sink must export, for messages: `sinkhost:sink/sink@0.1.x`.
fn expected_exports() -> String {
    SUPPORTED_VERSIONS
        .iter()
        .map(|version| format!("{SINK_EXPORT_PREFIX}{}.x", major_minor(version)))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The WIT version of the component's `sinkhost:sink/sink@X` export.
fn sink_version(
    path: &Path,
    engine: &Engine,
    component: &Component,
) -> Result<String, PluginLoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let Some(version) = exports
        .iter()
        .find_map(|name| name.strip_prefix(SINK_EXPORT_PREFIX))
    else {
        return Err(PluginLoadError::NotASink {
            path: path.to_path_buf(),
            exports: exports.join(", "),
            expected: expected_exports(),
        });
    };
    if supported_version(version).is_some() {
        Ok(version.to_string())
    } else {
        Err(PluginLoadError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: version.to_string(),
            supported: SUPPORTED_VERSIONS
                .iter()
                .map(|v| format!("{}.x", major_minor(v)))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// The supported version whose bindings run a plugin built against
/// `version`, if any.
fn supported_version(version: &str) -> Option<&'static str> {
    SUPPORTED_VERSIONS
        .iter()
        .copied()
        .find(|supported| semver_compatible(supported, version))
}

/// `major.minor` of a version.
fn major_minor(version: &str) -> String {
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

/// Semver compatibility as cargo applies it: for `0.x`, the same minor
/// (`0.1.0` and `0.1.7`); from `1.0`, the same major.
fn semver_compatible(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut numbers = v.split(['.', '-', '+']);
        Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
    };
    match (parts(a), parts(b)) {
        (Some((0, minor_a)), Some((0, minor_b))) => minor_a == minor_b,
        (Some((major_a, _)), Some((major_b, _))) => major_a == major_b,
        _ => false,
    }
}

/// Refuses a component that imports an interface the host does not provide,
/// naming the import and the grant it would need.
/// With the operator's `grants`, a component that sends HTTP requests also
/// needs an `http` grant: without one it could only fail at run time, so it
/// is refused at load time.
fn check_imports(
    path: &Path,
    engine: &Engine,
    component: &Component,
    grants: Option<&PreparedGrants>,
) -> Result<(), PluginLoadError> {
    for (name, _) in component.component_type().imports(engine) {
        let need = import_need(name);
        match need {
            ImportNeed::Unsupported(_) => {
                return Err(PluginLoadError::UnsupportedImport {
                    path: path.to_path_buf(),
                    import: name.to_string(),
                    need,
                })
            }
            ImportNeed::Grant(grant)
                if grant == Http::NAME && grants.is_some_and(|g| !g.has(grant)) =>
            {
                return Err(PluginLoadError::MissingGrant {
                    path: path.to_path_buf(),
                    import: name.to_string(),
                    grant,
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Links the component against WASI and the host imports of its version.
fn prepare(engine: &Engine, component: &Component, version: &str) -> wasmtime::Result<Prepared> {
    let mut linker: Linker<StoreState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    // The host's bounded filesystem in front of wasmtime-wasi's.
    crate::capabilities::files::add_to_linker(&mut linker, StoreState::guarded_fs)?;
    // Always linked: with no `http` grant every request is refused by the
    // hooks, and `check_imports` already refused a plugin that needs one.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    match supported_version(version) {
        Some(v0_1::VERSION) => {
            v0_1::add_to_linker(&mut linker)?;
            Ok(Prepared::V0_1(v0_1::Prepared::new(&linker, component)?))
        }
        _ => Err(wasmtime::Error::msg(format!(
            "no bindings for WIT version {version}"
        ))),
    }
}

fn link_error(path: &Path, err: &wasmtime::Error) -> PluginLoadError {
    PluginLoadError::Link {
        path: path.to_path_buf(),
        message: fault_message(err),
    }
}

/// The useful part of a wasmtime error: the trap (e.g. "wasm `unreachable`
/// instruction executed") or the error chain, on one line and without the
/// wasm backtrace.
fn fault_message(err: &wasmtime::Error) -> String {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return trap.to_string();
    }
    let chain: Vec<String> = err
        .chain()
        .map(ToString::to_string)
        .filter(|cause| !cause.starts_with(WASM_BACKTRACE_HEADER))
        .collect();
    one_line(&chain.join(": "))
}

/// Collapses whitespace and cuts the message to a log-friendly size.
fn one_line(message: &str) -> String {
    let joined = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.len() <= MAX_FAULT_MESSAGE_BYTES {
        return joined;
    }
    let mut end = MAX_FAULT_MESSAGE_BYTES;
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &joined[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        let path = Path::new("x.wasm");
        assert!(check_component_header(path, b"\0asm\x0d\x00\x01\x00rest").is_ok());
        let core = check_component_header(path, b"\0asm\x01\x00\x00\x00").expect_err("core module");
        assert!(
            core.to_string().contains("core WebAssembly module"),
            "{core}"
        );
        let text = check_component_header(path, b"hello world").expect_err("text");
        assert!(text.to_string().contains("magic bytes"), "{text}");
        let short = check_component_header(path, b"\0as").expect_err("short");
        assert!(
            short
                .to_string()
                .starts_with("x.wasm is not a WebAssembly component"),
            "{short}"
        );
    }

    #[test]
    fn versions_are_semver_compatible() {
        assert!(semver_compatible("0.1.0", "0.1.9"));
        assert!(semver_compatible("0.1.0", "0.1.0-rc1"));
        assert!(!semver_compatible("0.1.0", "0.2.0"));
        assert!(semver_compatible("1.0.0", "1.4.2"));
        assert!(!semver_compatible("1.0.0", "2.0.0"));
        assert!(!semver_compatible("0.1.0", "garbage"));
        assert_eq!(supported_version("0.1.3"), Some(v0_1::VERSION));
        assert_eq!(supported_version("0.2.0"), None);
    }

    #[test]
    fn expected_exports_name_the_supported_versions() {
        assert_eq!(expected_exports(), "sinkhost:sink/sink@0.1.x");
    }

    #[test]
    fn one_line_collapses_and_cuts() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert!(one_line(&"x".repeat(5_000)).len() <= MAX_FAULT_MESSAGE_BYTES + 3);
    }

    #[test]
    fn traps_are_named_without_backtraces() {
        let err =
            wasmtime::Error::new(Trap::UnreachableCodeReached).context("error while executing");
        assert_eq!(
            fault_message(&err),
            Trap::UnreachableCodeReached.to_string()
        );
        let err = wasmtime::Error::msg("root cause").context("outer");
        assert_eq!(fault_message(&err), "outer: root cause");
    }

    fn state() -> StoreState {
        StoreState::with_http(
            WasiCtxBuilder::new().build(),
            crate::capabilities::HttpHooks::default(),
            1 << 20,
            PluginLog::new("t".into()),
        )
    }

    fn limits() -> PluginLimits {
        PluginLimits {
            memory_mb: 64,
            call_timeout_ms: 300,
            ..PluginLimits::default()
        }
    }

    #[test]
    fn errors_are_classified_by_what_the_store_saw() {
        let classify =
            |state: &StoreState, err: wasmtime::Error| super::classify(&limits(), state, &err);
        let mut s = state();
        assert!(matches!(
            classify(&s, Trap::Interrupt.into()),
            PluginFault::Timeout { after_ms: 300 }
        ));
        assert!(matches!(
            classify(&s, Trap::UnreachableCodeReached.into()),
            PluginFault::Trap { .. }
        ));
        s.deadline.expired = true;
        assert!(matches!(
            classify(&s, wasmtime::Error::msg("x")),
            PluginFault::Timeout { .. }
        ));
        s.limiter.refused = true;
        assert!(matches!(
            classify(&s, wasmtime::Error::msg("x")),
            PluginFault::MemoryLimit { limit_mb: 64 }
        ));
    }
}
