//! `sinkhost plugin new | keygen | sign | verify | manifest | push | pull`:
//! new plugin projects (see `crate::scaffold`), publisher keys, plugin
//! signatures (see `crate::signing`), the embedded manifest (see
//! `crate::manifest`) and plugins in OCI registries (see `crate::registry`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Subcommand;

use crate::manifest::{self, section, Manifest};
use crate::registry::{self, PluginReference};
use crate::scaffold;
use crate::signing::{self, KeyFile};

/// Plugin supply-chain commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a sink project (source, WIT, build.sh, manifest.json,
    /// certify.json + certify.sh, README) in a new or empty directory.
    New {
        /// Language of the project.
        #[arg(long, value_enum)]
        lang: scaffold::Language,
        /// Directory to create (default: ./NAME); must be missing or empty.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Rust: the `sdk/rust` directory of a sinkhost checkout (default:
        /// $SINKHOST_SDK_DIR, else the checkout this binary was built from).
        #[arg(long, value_name = "DIR")]
        sdk_path: Option<PathBuf>,
        /// Plugin name: lower-case letters, digits, `-` and `_` (also the
        /// crate or package name and NAME.wasm).
        name: String,
    },
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
    /// Sign a plugin: writes `PLUGIN.sig` beside it (or, with `--embed`,
    /// stores the signature inside the component). The signature binds the
    /// name and version of the plugin's embedded manifest.
    Sign {
        /// The key file from `sinkhost plugin keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The registry repository the plugin is to be published under (e.g.
        /// `sinks/file`): the signature binds it, and a registry serving the
        /// plugin from another repository is refused. Required to push.
        #[arg(long, value_name = "REPOSITORY")]
        repository: Option<String>,
        /// Store the signature document in the component's
        /// `sinkhost-signature` custom section instead of `PLUGIN.sig`.
        #[arg(long)]
        embed: bool,
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
    /// The manifest embedded in a plugin.
    #[command(subcommand)]
    Manifest(ManifestCommand),
}

/// `sinkhost plugin manifest ...`.
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Validate a manifest (also against the component: its WIT version and
    /// the grants its imports need) and embed it in the component's
    /// `sinkhost-manifest` custom section, replacing any previous one.
    Embed {
        /// The manifest (`sinkhost.plugin-manifest.v1` JSON).
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Where to write the component with the manifest (default: in place).
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        /// The component (`.wasm`).
        plugin: PathBuf,
    },
    /// Print the manifest embedded in a component.
    Show {
        /// Print the manifest document (JSON) instead of text.
        #[arg(long)]
        json: bool,
        /// The component (`.wasm`).
        plugin: PathBuf,
    },
}

/// Writes a new plugin project and says what to do next.
fn new_project(project: scaffold::NewProject) -> anyhow::Result<()> {
    let dir = scaffold::create(&project)?;
    let shown = dir.display();
    println!("created {shown}");
    println!("next: cd {shown} && ./build.sh && ./certify.sh   (see README.md)");
    Ok(())
}

/// Runs a plugin command.
pub async fn execute(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New {
            lang,
            dir,
            sdk_path,
            name,
        } => new_project(scaffold::NewProject {
            language: lang,
            name,
            dir,
            sdk_path,
        }),
        PluginCommand::Keygen { out, key_id } => keygen(&out, key_id.as_deref()),
        PluginCommand::Sign {
            key,
            repository,
            embed,
            plugin,
        } => sign(&key, &plugin, repository.as_deref(), embed),
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
        PluginCommand::Manifest(ManifestCommand::Embed {
            manifest,
            out,
            plugin,
        }) => embed_manifest(&manifest, &plugin, out.as_deref()),
        PluginCommand::Manifest(ManifestCommand::Show { json, plugin }) => {
            show_manifest(&plugin, json)
        }
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

/// Reads a key file written by `sinkhost plugin keygen`.
pub(super) fn read_key(path: &Path) -> anyhow::Result<KeyFile> {
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

fn sign(
    key_path: &Path,
    plugin: &Path,
    repository: Option<&str>,
    embed: bool,
) -> anyhow::Result<()> {
    let key = read_key(key_path)?;
    let bytes = std::fs::read(plugin)
        .with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    if let Some(repository) = repository {
        registry::check_repository(repository)
            .map_err(|reason| anyhow::anyhow!("--repository: {reason}"))?;
    }
    let document = key.sign(&bytes, repository).map_err(|message| {
        anyhow::anyhow!(
            "cannot sign {} with key file {}: {message}",
            plugin.display(),
            key_path.display()
        )
    })?;
    if embed {
        return embed_signature(plugin, &bytes, &document);
    }
    let path = write_signature(plugin, &document)?;
    println!(
        "signed {} ({} {}, {}{}) with key {}: {}",
        plugin.display(),
        document.plugin,
        document.version,
        document.digest,
        document
            .repository
            .as_deref()
            .map(|repository| format!(", for repository {repository}"))
            .unwrap_or_default(),
        document.key_id,
        path.display()
    );
    Ok(())
}

/// Writes `PLUGIN.sig` atomically (temporary file, then rename).
pub(super) fn write_signature(
    plugin: &Path,
    document: &signing::SignatureDocument,
) -> anyhow::Result<PathBuf> {
    let path = signing::signature_path(plugin);
    let text = serde_json::to_string_pretty(document).context("rendering the signature")?;
    let temporary = path.with_extension("sig.tmp");
    std::fs::write(&temporary, text + "\n")
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
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

/// Stores `document` in the plugin's `sinkhost-signature` section. The
/// signed digest leaves that section out, so embedding does not change it.
fn embed_signature(
    plugin: &Path,
    bytes: &[u8],
    document: &signing::SignatureDocument,
) -> anyhow::Result<()> {
    let text = serde_json::to_vec(document).context("rendering the signature")?;
    let signed = section::replace_custom(bytes, manifest::SIGNATURE_SECTION, &text)
        .with_context(|| format!("{} is not a WebAssembly component", plugin.display()))?;
    write_atomically(plugin, &signed)?;
    println!(
        "signed {} ({}) with key {}: embedded in its `{}` section",
        plugin.display(),
        document.digest,
        document.key_id,
        manifest::SIGNATURE_SECTION
    );
    let detached = signing::signature_path(plugin);
    if detached.exists() {
        println!(
            "note: {} exists and is read first; remove it to use the embedded signature",
            detached.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so nobody ever loads a half-written component.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    let temporary = PathBuf::from(name);
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(err).with_context(|| format!("writing {}", temporary.display()));
    }
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}

fn embed_manifest(manifest_path: &Path, plugin: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let text = std::fs::read(manifest_path)
        .with_context(|| format!("cannot read manifest {}", manifest_path.display()))?;
    let manifest = Manifest::from_json(&text)
        .with_context(|| format!("manifest {}", manifest_path.display()))?;
    let inspection = crate::plugin::inspect_with_cache(plugin, None)?;
    let Some(wit_version) = inspection.wit_version.as_deref() else {
        bail!(
            "{} is not a sinkhost sink: it has no sinkhost:sink/sink export",
            plugin.display()
        );
    };
    manifest
        .check_world(wit_version)
        .and_then(|()| {
            manifest.check_imports(inspection.imports.iter().map(|import| import.name.as_str()))
        })
        .with_context(|| {
            format!(
                "manifest {} does not fit {}",
                manifest_path.display(),
                plugin.display()
            )
        })?;
    let bytes = std::fs::read(plugin)
        .with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    let embedded = section::replace_custom(&bytes, manifest::MANIFEST_SECTION, &manifest.to_json())
        .with_context(|| format!("{} is not a WebAssembly component", plugin.display()))?;
    let out = out.unwrap_or(plugin);
    write_atomically(out, &embedded)?;
    println!(
        "embedded manifest {} {} ({} bytes) in {}",
        manifest.name,
        manifest.version,
        embedded.len()
            - section::strip_custom(&embedded, manifest::MANIFEST_SECTION)
                .map(|bare| bare.len())
                .unwrap_or(0),
        out.display()
    );
    if signing::read_signature(out).is_ok() {
        println!(
            "note: the manifest is part of the signed bytes: sign {} again",
            out.display()
        );
    }
    Ok(())
}

fn show_manifest(plugin: &Path, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(plugin)
        .with_context(|| format!("cannot read plugin {}", plugin.display()))?;
    let Some(manifest) =
        Manifest::from_component(&bytes).with_context(|| format!("plugin {}", plugin.display()))?
    else {
        bail!(
            "{} has no embedded manifest (no `{}` section); embed one with `sinkhost plugin manifest embed --manifest FILE {}`",
            plugin.display(),
            manifest::MANIFEST_SECTION,
            plugin.display()
        );
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&manifest).context("rendering JSON")?
        );
        return Ok(());
    }
    println!("name:        {}", manifest.name);
    println!("version:     {}", manifest.version);
    println!("publisher:   {}", manifest.publisher);
    println!("description: {}", manifest.description);
    println!("license:     {}", manifest.license);
    println!("wit world:   {}", manifest.wit_world);
    if manifest.grants.is_empty() {
        println!("grants:      none declared");
    } else {
        println!("grants:");
        for grant in &manifest.grants {
            let required = if grant.required {
                "required"
            } else {
                "optional"
            };
            println!("  {} ({required}): {}", grant.kind, grant.reason);
        }
    }
    println!(
        "config schema: {}",
        if manifest.config_schema.is_some() {
            "present"
        } else {
            "absent"
        }
    );
    Ok(())
}
