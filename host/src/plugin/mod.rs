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

mod cache;
mod engine;
mod inspect;
mod pool;
mod state;
mod v0_1;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;

use crate::capabilities::{import_need, GrantError, ImportNeed, PreparedGrants};
use crate::config::{PluginConfig, PluginLimits};
use crate::envelope::Envelope;

pub use cache::CacheOutcome;
pub use inspect::{inspect, ImportReport, Inspection};
pub use pool::SinkPool;

use state::{LogLevel, LogOutput, PluginLog, StoreState};

/// Prefix of the export every sink provides; the version follows the `@`.
pub const SINK_EXPORT_PREFIX: &str = "sinkhost:sink/sink@";
/// WIT versions this host can run, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[v0_1::VERSION];
/// Longest fault message kept (traps can carry long backtraces).
const MAX_FAULT_MESSAGE_BYTES: usize = 1_000;

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
    #[error("{path} is not a sinkhost sink: it exports [{exports}]; expected {SINK_EXPORT_PREFIX}0.1.x")]
    NotASink {
        /// The file.
        path: PathBuf,
        /// What it exports instead.
        exports: String,
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
        /// Why it cannot be provided.
        need: ImportNeed,
    },
    /// A grant cannot be honoured on this host.
    #[error("{0}")]
    Grant(#[from] GrantError),
    /// The engine could not be set up or the component could not be linked.
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
    /// sha256 of the component bytes: the plugin's identity.
    pub digest: String,
    /// The WIT version of its `sink` export.
    pub wit_version: String,
    /// Whether it came from the precompiled cache.
    #[serde(skip)]
    pub cache: CacheOutcome,
    /// Milliseconds spent compiling or loading it.
    pub load_ms: u64,
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

/// The bindings of the component's WIT version.
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

/// A loaded, checked, compiled sink component. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl PluginHost {
    /// Compiles the component, or loads it precompiled from the cache; checks
    /// its world, version and imports, and the operator's grants.
    pub fn load(config: &PluginConfig, sink_config: &serde_json::Value) -> Result<Self, PluginLoadError> {
        let path = config.path.clone();
        let started = Instant::now();
        let bytes = std::fs::read(&path).map_err(|source| PluginLoadError::Read {
            path: path.clone(),
            source,
        })?;
        check_component_header(&path, &bytes)?;
        let digest = cache::sha256_hex(&bytes);
        let engine = engine::build().map_err(|err| link_error(&path, err))?;
        let cache_dir = config.cache_dir.clone().or_else(cache::default_dir);
        let (component, cache) = cache::load_or_compile(&engine, &bytes, &digest, cache_dir.as_deref())
            .map_err(|err| PluginLoadError::Compile {
                path: path.clone(),
                message: one_line(&format!("{err:#}")),
            })?;
        let version = sink_version(&path, &engine, &component)?;
        check_imports(&path, &engine, &component)?;
        let grants = PreparedGrants::prepare(&config.grants)?;
        let prepared = prepare(&engine, &component, &version).map_err(|err| link_error(&path, err))?;
        let name: Arc<str> = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_string())
            .into();
        let description = PluginDescription {
            path: path.clone(),
            digest,
            wit_version: version,
            cache,
            load_ms: started.elapsed().as_millis() as u64,
        };
        tracing::info!(
            plugin = %description,
            cache = ?description.cache,
            load_ms = description.load_ms,
            grants = ?grants.describe(),
            "plugin loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                prepared,
                grants,
                limits: config.limits.clone(),
                sink_config: sink_config.to_string(),
                name,
                description,
            }),
        })
    }

    /// Instantiates once and calls `init` with the sink config.
    pub async fn check_init(&self) -> Result<(), PluginFault> {
        self.new_instance().await.map(drop)
    }

    /// A pool of up to `size` instances for concurrent batches.
    pub fn pool(&self, size: usize) -> SinkPool {
        SinkPool::new(self.clone(), size)
    }

    /// Path, digest and WIT version.
    pub fn describe(&self) -> PluginDescription {
        self.inner.description.clone()
    }

    /// A new instance, with `init` called.
    async fn new_instance(&self) -> Result<Instance, PluginFault> {
        let inner = &self.inner;
        let log = PluginLog::new(Arc::clone(&inner.name));
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogOutput::new(log.clone(), "stdout", LogLevel::Info))
            .stderr(LogOutput::new(log.clone(), "stderr", LogLevel::Warn))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // File operations run on the calling thread instead of a
            // `spawn_blocking` round trip each: a per-message file sink makes
            // several small calls per message, and the hop dominated (3x).
            .allow_blocking_current_thread(true);
        inner
            .grants
            .apply(&mut wasi)
            .map_err(|err| PluginFault::Init { message: err.to_string() })?;
        let memory_bytes = usize::try_from(inner.limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        let mut store = Store::new(&inner.engine, StoreState::new(wasi.build(), memory_bytes, log));
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut context| context.data_mut().deadline.tick());

        self.arm(&mut store);
        let bindings = match &inner.prepared {
            Prepared::V0_1(prepared) => prepared.instantiate(&mut store).await.map(Bindings::V0_1),
        }
        .map_err(|err| self.classify(&store, err))?;
        let mut instance = Instance { store, bindings };
        self.arm(&mut instance.store);
        let answer = match &instance.bindings {
            Bindings::V0_1(bindings) => bindings.init(&mut instance.store, &inner.sink_config).await,
        };
        match answer {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(message)) => Err(PluginFault::Init {
                message: format!("the plugin rejected its `sink` config: {}", one_line(&message)),
            }),
            Err(err) => Err(self.classify(&instance.store, err)),
        }
    }

    /// Writes a batch on `instance`. Any error means the instance is dead.
    async fn write_batch(&self, instance: &mut Instance, batch: &[Envelope]) -> Result<WriteOutcome, PluginFault> {
        self.arm(&mut instance.store);
        let result = match &instance.bindings {
            Bindings::V0_1(bindings) => bindings.write_batch(&mut instance.store, batch).await,
        };
        match result {
            Ok(outcome) => outcome,
            Err(err) => Err(self.classify(&instance.store, err)),
        }
    }

    fn arm(&self, store: &mut Store<StoreState>) {
        let ticks = engine::ticks_for(self.inner.limits.call_timeout_ms);
        store.data_mut().deadline.arm(ticks);
        store.set_epoch_deadline(1);
    }

    /// Turns a wasmtime error into the fault it really is.
    fn classify(&self, store: &Store<StoreState>, err: wasmtime::Error) -> PluginFault {
        let state = store.data();
        if state.deadline.expired {
            PluginFault::Timeout {
                after_ms: self.inner.limits.call_timeout_ms,
            }
        } else if state.limiter.refused {
            PluginFault::MemoryLimit {
                limit_mb: self.inner.limits.memory_mb,
            }
        } else {
            PluginFault::Trap {
                message: one_line(&format!("{err:#}")),
            }
        }
    }
}

/// One plugin instance: its own Store and exports.
struct Instance {
    store: Store<StoreState>,
    bindings: Bindings,
}

/// Component binary: `\0asm`, then version 0x0d and layer 1.
fn check_component_header(path: &Path, bytes: &[u8]) -> Result<(), PluginLoadError> {
    let not_a_component = |reason: &str| PluginLoadError::NotAComponent {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(not_a_component("the file does not start with the WebAssembly magic bytes"));
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(not_a_component(
            "it is a core WebAssembly module; build the sink for wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
        )),
        _ => Err(not_a_component("unknown WebAssembly version or layer")),
    }
}

/// The WIT version of the component's `sinkhost:sink/sink@X` export.
fn sink_version(path: &Path, engine: &Engine, component: &Component) -> Result<String, PluginLoadError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let Some(version) = exports.iter().find_map(|name| name.strip_prefix(SINK_EXPORT_PREFIX)) else {
        return Err(PluginLoadError::NotASink {
            path: path.to_path_buf(),
            exports: exports.join(", "),
        });
    };
    if SUPPORTED_VERSIONS.iter().any(|supported| same_minor(supported, version)) {
        Ok(version.to_string())
    } else {
        Err(PluginLoadError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: version.to_string(),
            supported: SUPPORTED_VERSIONS.join(", "),
        })
    }
}

/// `0.1.0` and `0.1.7` are compatible (semver for 0.x: same minor).
fn same_minor(a: &str, b: &str) -> bool {
    let major_minor = |v: &str| v.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
    major_minor(a) == major_minor(b)
}

/// Refuses a component that imports an interface the host does not provide.
fn check_imports(path: &Path, engine: &Engine, component: &Component) -> Result<(), PluginLoadError> {
    for (name, _) in component.component_type().imports(engine) {
        let need = import_need(name);
        if let ImportNeed::Unsupported(_) = need {
            return Err(PluginLoadError::UnsupportedImport {
                path: path.to_path_buf(),
                import: name.to_string(),
                need,
            });
        }
    }
    Ok(())
}

/// Links the component for its version.
fn prepare(engine: &Engine, component: &Component, version: &str) -> wasmtime::Result<Prepared> {
    let mut linker: Linker<StoreState> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    if same_minor(v0_1::VERSION, version) {
        v0_1::add_to_linker(&mut linker)?;
        return Ok(Prepared::V0_1(v0_1::Prepared::new(&linker, component)?));
    }
    Err(wasmtime::Error::msg(format!("no bindings for WIT version {version}")))
}

fn link_error(path: &Path, err: wasmtime::Error) -> PluginLoadError {
    PluginLoadError::Link {
        path: path.to_path_buf(),
        message: one_line(&format!("{err:#}")),
    }
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
        assert!(core.to_string().contains("core WebAssembly module"), "{core}");
        let text = check_component_header(path, b"hello world").expect_err("text");
        assert!(text.to_string().contains("magic bytes"), "{text}");
    }

    #[test]
    fn versions_match_on_minor() {
        assert!(same_minor("0.1.0", "0.1.9"));
        assert!(!same_minor("0.1.0", "0.2.0"));
    }

    #[test]
    fn one_line_collapses_and_cuts() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert!(one_line(&"x".repeat(5_000)).len() <= MAX_FAULT_MESSAGE_BYTES + 3);
    }
}
