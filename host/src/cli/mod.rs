//! The `sinkhost` command line.
//!
//! Every command exits non-zero on error with one line on standard error
//! saying what went wrong and where.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod certify;
mod plugin;
mod security;

use crate::config::{Config, LoggingConfig};
use crate::plugin::PluginHost;
use crate::security::pipeline::SecurityPipeline;

/// Moves events from NATS JetStream into sandboxed WebAssembly sinks.
#[derive(Debug, Parser)]
#[command(name = "sinkhost", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume from JetStream and deliver to the sink until SIGINT/SIGTERM.
    Run {
        /// Sink component to run, a path or `oci://...` (overrides `plugin.path`).
        #[arg(long, value_name = "PATH")]
        plugin: Option<PathBuf>,
        /// Configuration file (JSON).
        config: PathBuf,
    },
    /// Check a configuration: parse it, load the plugin (checking its
    /// manifest and the `sink` section against its config schema), connect
    /// to every granted database, call its `init`.
    Validate {
        /// Sink component, a path or `oci://...` (overrides `plugin.path`).
        #[arg(long, value_name = "PATH")]
        plugin: Option<PathBuf>,
        /// Configuration file (JSON).
        config: PathBuf,
    },
    /// Print the configuration with defaults filled in (no secrets).
    ShowEffectiveConfig {
        /// Sink component (overrides `plugin.path`).
        #[arg(long, value_name = "PATH")]
        plugin: Option<PathBuf>,
        /// Configuration file (JSON).
        config: PathBuf,
    },
    /// Key material for authenticity and encryption.
    #[command(subcommand)]
    Keys(security::KeysCommand),
    /// Sign a payload the way a producer must; prints the headers to send.
    Sign(security::SignArgs),
    /// Decrypt a stored record or encrypted payload envelope; key from env.
    Decrypt(security::DecryptArgs),
    /// Publisher keys, plugin signatures and plugin manifests.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run the certification suite on a sink against a real JetStream;
    /// with `--certifier-key`, sign a certification into `PLUGIN.sig`.
    Certify(certify::CertifyArgs),
    /// Show a component's WIT world, imports, the grants they need and its
    /// embedded manifest.
    Inspect {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The component (`.wasm`).
        plugin: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    crate::logging::mark_process_start();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
pub async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { plugin, config } => run(&config, plugin).await,
        Command::Validate { plugin, config } => validate(&config, plugin).await,
        Command::ShowEffectiveConfig { plugin, config } => show_effective_config(&config, plugin),
        Command::Inspect { json, plugin } => inspect(&plugin, json),
        Command::Keys(command) => security::keys(command),
        Command::Sign(args) => security::sign(args),
        Command::Decrypt(args) => security::decrypt(args),
        Command::Plugin(command) => plugin::execute(command).await,
        Command::Certify(args) => {
            // The report says what happened; `RUST_LOG=info` shows the run.
            crate::logging::init(&LoggingConfig {
                level: "OFF".to_string(),
                format: LoggingConfig::default().format,
            });
            certify::certify(args).await
        }
    }
}

fn load_config(path: &Path, plugin_override: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut config = Config::load(path)?;
    if let Some(plugin) = plugin_override {
        config.plugin.path = plugin;
    }
    Ok(config)
}

async fn run(config_path: &Path, plugin_override: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = load_config(config_path, plugin_override)?;
    crate::logging::init(&config.logging);
    resolve_registry_plugin(&mut config).await?;
    let plugin = load_plugin(&config)?;
    plugin.check_init().await.with_context(|| {
        format!(
            "plugin {} rejected the `sink` section",
            config.plugin.path.display()
        )
    })?;
    tracing::info!(
        elapsed_ms = crate::logging::millis_since_start() as u64,
        "plugin ready"
    );
    let security = SecurityPipeline::from_config(&config)?;
    let shutdown = crate::delivery::shutdown::install().context("installing signal handlers")?;
    crate::delivery::run(config, plugin, security, shutdown).await?;
    Ok(())
}

/// An `oci://` plugin is fetched into (or found in) the digest-keyed cache
/// and verified there; `plugin.path` then names the cached file, whose
/// `.sig` beside it the normal load path checks again.
async fn resolve_registry_plugin(config: &mut Config) -> anyhow::Result<()> {
    let Some(text) = config
        .plugin
        .path
        .to_str()
        .filter(|text| crate::registry::PluginReference::is_reference(text))
    else {
        return Ok(());
    };
    let reference = crate::registry::PluginReference::parse(text)?;
    let root = crate::registry::cache::default_root(config.plugin.cache_dir.as_deref()).context(
        "no cache directory for registry plugins: set plugin.cache_dir or SINKHOST_CACHE_DIR",
    )?;
    let resolved = crate::registry::oci::resolve(
        &reference,
        config.trust.as_ref(),
        &crate::registry::cache::OciCache::new(root),
    )
    .await
    .with_context(|| format!("cannot fetch plugin {reference}"))?;
    config.plugin.path = resolved.path;
    Ok(())
}

fn load_plugin(config: &Config) -> anyhow::Result<PluginHost> {
    PluginHost::load_trusted(&config.plugin, &config.sink, config.trust.as_ref())
        .with_context(|| format!("cannot load plugin {}", config.plugin.path.display()))
}

async fn validate(config_path: &Path, plugin_override: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = load_config(config_path, plugin_override)?;
    crate::logging::init(&quiet_logging(&config.logging));
    SecurityPipeline::from_config(&config)?;
    resolve_registry_plugin(&mut config).await?;
    let plugin = load_plugin(&config)?;
    for (name, outcome) in plugin.check_sql_connections().await {
        outcome.with_context(|| format!("plugin.grants.sql `{name}`: cannot connect"))?;
    }
    plugin.check_init().await.with_context(|| {
        format!(
            "plugin {} rejected the `sink` section",
            config.plugin.path.display()
        )
    })?;
    let description = plugin.describe();
    for warning in &description.warnings {
        println!("warning: {warning}");
    }
    println!(
        "ok: {} is valid; plugin {} accepted its sink config",
        config_path.display(),
        description
    );
    Ok(())
}

fn show_effective_config(
    config_path: &Path,
    plugin_override: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = load_config(config_path, plugin_override)?;
    let text =
        serde_json::to_string_pretty(&config.effective()).context("rendering the configuration")?;
    println!("{text}");
    Ok(())
}

fn inspect(plugin: &Path, json: bool) -> anyhow::Result<()> {
    crate::logging::init(&quiet_logging(&LoggingConfig::default()));
    let inspection = crate::plugin::inspect(plugin)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&inspection).context("rendering JSON")?
        );
    } else {
        println!("{inspection}");
    }
    Ok(())
}

/// Commands that print a result keep the log to warnings unless asked.
fn quiet_logging(configured: &LoggingConfig) -> LoggingConfig {
    LoggingConfig {
        level: "WARN".to_string(),
        format: configured.format,
    }
}
