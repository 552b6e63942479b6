//! `sinkhost certify PLUGIN --config CONFIG`: runs the certification suite
//! (see `crate::certify`), prints the report, writes it as JSON, and with
//! `--certifier-key` attaches a signed certification to `PLUGIN.sig`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use crate::certify::{self, report::Report, CertifyOptions};
use crate::signing;

/// Arguments of `sinkhost certify`.
#[derive(Debug, clap::Args)]
pub struct CertifyArgs {
    /// Configuration: grants, limits, `sink` and the `certification`
    /// section (verifier command...).
    #[arg(long, value_name = "CONFIG")]
    pub config: PathBuf,
    /// Use this JetStream server instead of starting a private
    /// `nats-server` (the run creates and deletes its own streams).
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// On success, sign a certification with this key file (from
    /// `sinkhost plugin keygen`) into the plugin's signature `PLUGIN.sig`.
    #[arg(long, value_name = "KEY")]
    pub certifier_key: Option<PathBuf>,
    /// The component (`.wasm`).
    pub plugin: PathBuf,
}

/// Runs the suite; fails (non-zero exit) when a check failed.
pub async fn certify(args: CertifyArgs) -> anyhow::Result<()> {
    // Read the key first: a wrong path should not cost a whole run.
    let certifier = args
        .certifier_key
        .as_deref()
        .map(super::plugin::read_key)
        .transpose()?;
    if certifier.is_some() {
        // Fail early when there is no signature to attach to.
        signing::read_signature(&args.plugin)?;
    }
    let options = CertifyOptions {
        plugin: args.plugin.clone(),
        config: args.config.clone(),
        nats_url: args.nats_url.clone(),
    };
    let report = certify::certify(&options).await?;
    println!("{report}");
    let json = serde_json::to_string_pretty(&report).context("rendering the JSON report")? + "\n";
    if let Some(path) = &args.report_json {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    if !report.passed {
        bail!(
            "{} failed certification: {}",
            args.plugin.display(),
            report.failed_checks().join(", ")
        );
    }
    if let (Some(key), Some(key_path)) = (certifier, args.certifier_key.as_deref()) {
        attach(&args.plugin, &report, &json, &key, key_path)?;
    }
    Ok(())
}

/// Adds the signed certification to the plugin's signature document.
fn attach(
    plugin: &Path,
    report: &Report,
    json: &str,
    key: &signing::KeyFile,
    key_path: &Path,
) -> anyhow::Result<()> {
    let mut document = signing::read_signature(plugin)?;
    if document.digest != report.digest {
        bail!(
            "{}: the signature is for {}, the certified plugin is {}: sign the plugin again before certifying it",
            plugin.display(),
            document.digest,
            report.digest
        );
    }
    let report_sha256 = format!("sha256:{}", hex::encode(Sha256::digest(json.as_bytes())));
    let certification = key
        .certify(
            &report.digest,
            &report.suite,
            &report_sha256,
            report.passed_checks(),
        )
        .map_err(|message| anyhow::anyhow!("key file {}: {message}", key_path.display()))?;
    let certifier = certification.key_id.clone();
    document.certification = Some(certification);
    let path = super::plugin::write_signature(plugin, &document)?;
    println!("certified by {certifier}: {}", path.display());
    Ok(())
}
