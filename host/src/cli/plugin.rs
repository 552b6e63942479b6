//! `sinkhost plugin keygen | sign | verify`: publisher keys and detached
//! plugin signatures (see `crate::signing`); `push | pull`: plugins in OCI
//! registries (see `crate::registry`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Subcommand;

use crate::registry::{self, PluginReference};
use crate::signing::{self, KeyFile};

/// Plugin supply-chain commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create an Ed25519 signing key file (private: keep it safe); prints the
    /// key id and public key to list in an operator's `trust.publishers`.
    Keygen {
        /// Where to write the key file (created; never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Key id to embed (default: 16 hex digits of the public key's sha256).
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Sign a plugin: writes `PLUGIN.sig` beside it.
    Sign {
        /// The key file from `sinkhost plugin keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The component (`.wasm`).
        plugin: PathBuf,
    },
    /// Verify a plugin's signature against the trust policy of a config, or
    /// against one public key.
    Verify {
        /// Config whose `trust.publishers` to use.
        #[arg(long, value_name = "CONFIG", conflicts_with = "public_key_b64")]
        config: Option<PathBuf>,
        /// A single trusted public key (standard base64).
        #[arg(long, requires = "key_id")]
        public_key_b64: Option<String>,
        /// The key id that goes with `--public-key-b64`.
        #[arg(long)]
        key_id: Option<String>,
        /// The component (`.wasm`).
        plugin: PathBuf,
    },
    /// Upload a signed plugin and its signature document (with any
    /// certification) to an OCI registry.
    Push {
        /// The component (`.wasm`); `PLUGIN.sig` must be beside it.
        plugin: PathBuf,
        /// Where to: `oci://HOST[:PORT]/REPOSITORY:TAG`.
        reference: String,
    },
    /// Download a plugin from an OCI registry, verify it, and write
    /// `DIR/<name>.wasm` and its `.sig`.
    Pull {
        /// What: `oci://HOST[:PORT]/REPOSITORY:TAG` or `...@sha256:HEX`.
        reference: String,
        /// Directory to write the plugin into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Config whose `trust` policy the plugin must satisfy.
        #[arg(long, value_name = "CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs a plugin command.
pub async fn execute(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Keygen { out, key_id } => keygen(&out, key_id.as_deref()),
        PluginCommand::Sign { key, plugin } => sign(&key, &plugin),
        PluginCommand::Verify {
            config,
            public_key_b64,
            key_id,
            plugin,
        } => verify(
            config.as_deref(),
            public_key_b64.as_deref(),
            key_id.as_deref(),
            &plugin,
        ),
        PluginCommand::Push { plugin, reference } => push(&plugin, &reference).await,
        PluginCommand::Pull {
            reference,
            out,
            config,
        } => pull(&reference, &out, config.as_deref()).await,
    }
}

async fn push(plugin: &Path, reference: &str) -> anyhow::Result<()> {
    let reference = PluginReference::parse(reference)?;
    let pushed = registry::oci::push(plugin, &reference).await?;
    println!(
        "pushed {} ({}, signed by {}{}) to {reference}",
        plugin.display(),
        pushed.component_digest,
        pushed.key_id,
        if pushed.certified { ", certified" } else { "" }
    );
    println!(
        "pin it with oci://{}/{}@{}",
        reference.registry, reference.repository, pushed.manifest_digest
    );
    Ok(())
}

async fn pull(reference: &str, out: &Path, config: Option<&Path>) -> anyhow::Result<()> {
    let reference = PluginReference::parse(reference)?;
    let trust = match config {
        Some(path) => crate::config::Config::load(path)?.trust,
        None => None,
    };
    let pulled = registry::oci::pull(&reference, trust.as_ref()).await?;
    let plugin = registry::oci::install(out, reference.plugin_name(), &pulled)?;
    println!(
        "pulled {reference} ({}, manifest {}) to {}",
        pulled.document.digest,
        pulled.manifest_digest,
        plugin.display()
    );
    match &pulled.decision {
        signing::TrustDecision::Trusted {
            publisher,
            certifier,
        } => println!(
            "verified: blob digests, signed by trusted publisher {}, certified by {}",
            publisher.as_deref().unwrap_or("- (not required)"),
            certifier.as_deref().unwrap_or("- (not required)")
        ),
        signing::TrustDecision::NotRequired => eprintln!(
            "warning: no trust policy (give --config CONFIG with a `trust` section): the blob digests and that the signature is for these bytes were checked, but the publisher (key `{}`) was NOT verified",
            pulled.document.key_id
        ),
    }
    Ok(())
}

fn keygen(out: &Path, key_id: Option<&str>) -> anyhow::Result<()> {
    let key = signing::generate_key(key_id);
    let text = serde_json::to_string_pretty(&key).context("rendering the key")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| {
        format!(
            "cannot create key file {} (it must not exist yet)",
            out.display()
        )
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    println!("key_id: {}", key.key_id);
    println!("public_key_b64: {}", key.public_key_b64);
    println!(
        "wrote the private key to {} (mode 0600); share only the two lines above",
        out.display()
    );
    Ok(())
}

fn read_key(path: &Path) -> anyhow::Result<KeyFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let key: KeyFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a sinkhost signing key file", path.display()))?;
    if key.schema != signing::KEY_SCHEMA {
        bail!(
            "{} is not a sinkhost signing key file (schema `{}`)",
            path.display(),
            key.schema
        );
    }
    Ok(key)
}

fn sign(key_path: &Path, plugin: &Path) -> anyhow::Result<()> {
    let key = read_key(key_path)?;
    let bytes = std::fs::read(plugin)
        .with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    let document = key
        .sign(&bytes)
        .map_err(|message| anyhow::anyhow!("key file {}: {message}", key_path.display()))?;
    let path = signing::signature_path(plugin);
    let text = serde_json::to_string_pretty(&document).context("rendering the signature")?;
    let temporary = path.with_extension("sig.tmp");
    std::fs::write(&temporary, text + "\n")
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "signed {} ({}) with key {}: {}",
        plugin.display(),
        document.digest,
        document.key_id,
        path.display()
    );
    Ok(())
}

fn verify(
    config: Option<&Path>,
    public_key_b64: Option<&str>,
    key_id: Option<&str>,
    plugin: &Path,
) -> anyhow::Result<()> {
    let trusted = match (config, public_key_b64, key_id) {
        (Some(config), _, _) => {
            let config = crate::config::Config::load(config)?;
            let Some(trust) = config.trust else {
                bail!("the config has no `trust` section: nothing to verify against");
            };
            trust
                .trusted_keys()
                .map_err(|message| anyhow::anyhow!("trust.publishers: {message}"))?
        }
        (None, Some(key), Some(key_id)) => {
            let key = signing::decode_public_key(key)
                .map_err(|message| anyhow::anyhow!("--public-key-b64: {message}"))?;
            vec![(key_id.to_string(), key)]
        }
        _ => bail!("give --config CONFIG, or --public-key-b64 with --key-id"),
    };
    let bytes = std::fs::read(plugin)
        .with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    let document = signing::read_signature(plugin)?;
    let key_id = signing::verify(plugin, &bytes, &document, &trusted)?;
    println!(
        "ok: {} ({}) is signed by trusted key {key_id} at {}",
        plugin.display(),
        document.digest,
        document.signed_at
    );
    Ok(())
}
