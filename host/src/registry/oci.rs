//! Push and pull plugin artifacts with `oci-client`.
//!
//! What is verified, and when:
//! - push: the plugin has a signature document beside it whose digest is
//!   the plugin's sha256 (a publisher never uploads bytes it did not sign);
//! - pull and run: the manifest's digest (when the reference pins one), the
//!   sha256 of every blob received against its descriptor (recomputed here
//!   even though the client checks too), that the signature document is for
//!   those bytes, and then the operator's trust policy (publisher signature,
//!   certification), all before anything is written.
//!
//! Transport: a registry on a loopback address (`localhost`, `127.x.y.z`)
//! is spoken to over plain HTTP, every other over HTTPS (rustls, the
//! system's roots). Access is anonymous unless `SINKHOST_REGISTRY_USERNAME`
//! and `SINKHOST_REGISTRY_PASSWORD` are set (basic credentials, exchanged
//! for a token when the registry asks for one); they are never logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use serde::Serialize;

use super::cache::{write_atomically, OciCache};
use super::{
    check_digest, PluginReference, RegistryError, SIGNATURE_LAYER_MEDIA_TYPE,
    WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};
use crate::config::TrustConfig;
use crate::signing::{self, SignatureDocument, SignatureError, TrustDecision};

/// Environment variable with the registry user name (basic auth).
pub const USERNAME_ENV: &str = "SINKHOST_REGISTRY_USERNAME";
/// Environment variable with the registry password or token (basic auth).
pub const PASSWORD_ENV: &str = "SINKHOST_REGISTRY_PASSWORD";
/// Largest component accepted from a registry.
const MAX_COMPONENT_BYTES: u64 = 512 * 1024 * 1024;
/// Largest signature document accepted from a registry.
const MAX_SIGNATURE_BYTES: u64 = 1024 * 1024;
/// Connecting to a registry gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A read from a registry that stalls this long fails.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Manifest annotation and layer title key (OCI image spec).
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Manifest creation-time annotation key (OCI image spec).
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// The config blob of a plugin artifact (WebAssembly OCI artifact layout).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig {
    created: String,
    author: String,
    architecture: &'static str,
    os: &'static str,
    layer_digests: Vec<String>,
}

/// What `push` uploaded.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `sha256:<hex>` of the component.
    pub component_digest: String,
    /// `sha256:<hex>` of the manifest (pin the plugin with `@<this>`).
    pub manifest_digest: String,
    /// The publisher key id of the signature document.
    pub key_id: String,
    /// Whether the signature document carries a certification.
    pub certified: bool,
}

/// A plugin downloaded and verified.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The component's bytes.
    pub component: Vec<u8>,
    /// The signature document's bytes, as published.
    pub signature: Vec<u8>,
    /// The parsed signature document.
    pub document: SignatureDocument,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// What the trust policy decided.
    pub decision: TrustDecision,
}

/// A plugin resolved into the local cache for `run`.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The cached component (its `.sig` is beside it).
    pub path: PathBuf,
    /// `sha256:<hex>` of the component.
    pub component_digest: String,
    /// Whether the cache already held it (nothing was downloaded).
    pub cache_hit: bool,
}

/// The two layers of a plugin artifact.
struct PluginLayers {
    component: OciDescriptor,
    signature: OciDescriptor,
    manifest_digest: String,
}

/// A client for the reference's registry: plain HTTP on loopback, HTTPS
/// elsewhere.
fn client(reference: &PluginReference) -> Client {
    let protocol = if reference.is_loopback() {
        ClientProtocol::HttpsExcept(vec![reference.registry.clone()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: concat!("sinkhost/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    })
}

/// Basic credentials from the environment, else anonymous.
fn auth() -> RegistryAuth {
    let var = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (var(USERNAME_ENV), var(PASSWORD_ENV)) {
        (Some(username), Some(password)) => RegistryAuth::Basic(username, password),
        _ => RegistryAuth::Anonymous,
    }
}

fn registry_error(
    reference: &PluginReference,
    operation: &str,
    err: impl std::fmt::Display,
) -> RegistryError {
    RegistryError::Registry {
        registry: reference.registry.clone(),
        operation: operation.to_string(),
        reason: err.to_string(),
    }
}

/// Uploads `plugin` and its signature document (`PLUGIN.sig`) to
/// `reference`, which must name a tag and no digest.
pub async fn push(plugin: &Path, reference: &PluginReference) -> Result<Pushed, RegistryError> {
    let refuse = |reason: String| RegistryError::NotPushable {
        plugin: plugin.display().to_string(),
        reason,
    };
    if reference.tag.is_none() || reference.digest.is_some() {
        return Err(refuse(format!(
            "push to a tag, not a digest ({reference} -> oci://{}/{}:TAG)",
            reference.registry, reference.repository
        )));
    }
    let component = std::fs::read(plugin).map_err(|source| RegistryError::Io {
        path: plugin.display().to_string(),
        source,
    })?;
    if !component.starts_with(b"\0asm") {
        return Err(refuse("it is not a WebAssembly file".into()));
    }
    let document = signing::read_signature(plugin).map_err(|err| match err {
        SignatureError::Missing { .. } => refuse(format!(
            "it is not signed: {err}; only signed plugins are published"
        )),
        other => refuse(other.to_string()),
    })?;
    let component_digest = signing::plugin_digest(&component);
    if document.digest != component_digest {
        return Err(refuse(format!(
            "its signature is for {}, its sha256 is {component_digest} (the plugin was changed after signing: sign it again)",
            document.digest
        )));
    }
    signing::verify_repository(
        &plugin.display().to_string(),
        &document,
        &reference.repository,
    )
    .map_err(|err| refuse(err.to_string()))?;
    let signature_path = signing::signature_path(plugin);
    let signature = std::fs::read(&signature_path).map_err(|source| RegistryError::Io {
        path: signature_path.display().to_string(),
        source,
    })?;
    let name = reference.plugin_name();
    let layers = vec![
        ImageLayer::new(
            component,
            WASM_LAYER_MEDIA_TYPE.to_string(),
            Some(title(&format!("{name}.wasm"))),
        ),
        ImageLayer::new(
            signature,
            SIGNATURE_LAYER_MEDIA_TYPE.to_string(),
            Some(title(&format!("{name}.wasm.sig"))),
        ),
    ];
    let config = WasmConfig {
        created: document.signed_at.clone(),
        author: document.key_id.clone(),
        architecture: "wasm",
        os: "wasip2",
        layer_digests: layers.iter().map(ImageLayer::sha256_digest).collect(),
    };
    let config_bytes = serde_json::to_vec(&config)
        .map_err(|err| refuse(format!("rendering the artifact config: {err}")))?;
    let config = Config::new(config_bytes, WASM_CONFIG_MEDIA_TYPE.to_string(), None);
    let mut manifest = OciImageManifest::build(
        &layers,
        &config,
        Some(BTreeMap::from([(
            CREATED_ANNOTATION.to_string(),
            document.signed_at.clone(),
        )])),
    );
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    let client = client(reference);
    let oci_reference = reference.to_oci();
    let auth = auth();
    client
        .push(&oci_reference, &layers, config, &auth, Some(manifest))
        .await
        .map_err(|err| registry_error(reference, "push", err))?;
    let manifest_digest = client
        .fetch_manifest_digest(&oci_reference, &auth)
        .await
        .map_err(|err| registry_error(reference, "reading back the pushed manifest", err))?;
    Ok(Pushed {
        component_digest,
        manifest_digest,
        key_id: document.key_id,
        certified: document.certification.is_some(),
    })
}

fn title(value: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(TITLE_ANNOTATION.to_string(), value.to_string())])
}

/// Fetches the manifest and finds the component and signature layers.
async fn fetch_layers(
    client: &Client,
    reference: &PluginReference,
) -> Result<PluginLayers, RegistryError> {
    let not_a_plugin = |reason: String| RegistryError::NotAPlugin {
        reference: reference.to_string(),
        reason,
    };
    let (bytes, manifest_digest) = client
        .pull_manifest_raw(&reference.to_oci(), &auth(), &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|err| {
            registry_error(
                reference,
                &format!("fetching the manifest of {reference}"),
                err,
            )
        })?;
    let actual = signing::plugin_digest(&bytes);
    if let Some(pinned) = &reference.digest {
        if *pinned != actual {
            return Err(not_a_plugin(format!(
                "the registry returned a manifest whose sha256 is {actual}, not the pinned {pinned}"
            )));
        }
    }
    let manifest: OciManifest = serde_json::from_slice(&bytes)
        .map_err(|err| not_a_plugin(format!("its manifest is not an OCI image manifest: {err}")))?;
    let OciManifest::Image(manifest) = manifest else {
        return Err(not_a_plugin(
            "it is an image index, not an image manifest".into(),
        ));
    };
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(not_a_plugin(format!(
            "its config media type is `{}`, not {WASM_CONFIG_MEDIA_TYPE}",
            manifest.config.media_type
        )));
    }
    let layer = |media_type: &str, what: &str| {
        let mut found = manifest
            .layers
            .iter()
            .filter(|layer| layer.media_type == media_type);
        match (found.next(), found.next()) {
            (Some(layer), None) => check_digest(&layer.digest)
                .map(|()| layer.clone())
                .map_err(|reason| not_a_plugin(format!("its {what} layer: {reason}"))),
            (None, _) => Err(not_a_plugin(format!(
                "it has no {what} layer ({media_type}){}",
                if what == "signature" {
                    ": it was not published with `sinkhost plugin push`, or its signature was stripped"
                } else {
                    ""
                }
            ))),
            (Some(_), Some(_)) => Err(not_a_plugin(format!("it has more than one {what} layer"))),
        }
    };
    Ok(PluginLayers {
        component: layer(WASM_LAYER_MEDIA_TYPE, "component")?,
        signature: layer(SIGNATURE_LAYER_MEDIA_TYPE, "signature")?,
        manifest_digest: if reference.digest.is_some() {
            actual
        } else {
            manifest_digest
        },
    })
}

/// Downloads one blob, refusing more bytes than its descriptor declares
/// (or than `limit`), and checks its sha256 here.
async fn download(
    client: &Client,
    reference: &PluginReference,
    descriptor: &OciDescriptor,
    what: &'static str,
    limit: u64,
) -> Result<Vec<u8>, RegistryError> {
    let declared = u64::try_from(descriptor.size).unwrap_or(0);
    if declared > limit {
        return Err(RegistryError::NotAPlugin {
            reference: reference.to_string(),
            reason: format!(
                "its {what} layer declares {declared} bytes, more than the {limit} accepted"
            ),
        });
    }
    let mut stream = client
        .pull_blob_stream(&reference.to_oci(), descriptor)
        .await
        .map_err(|err| registry_error(reference, &format!("downloading the {what}"), err))?;
    let mut bytes = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    let mut transport_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > declared {
                    break;
                }
            }
            Err(err) => {
                transport_error = Some(err);
                break;
            }
        }
    }
    // Our own check first: a tampered blob is named as such, whatever the
    // client reported.
    check_blob(reference, what, &descriptor.digest, &bytes)?;
    if let Some(err) = transport_error {
        return Err(registry_error(
            reference,
            &format!("downloading the {what}"),
            err,
        ));
    }
    Ok(bytes)
}

/// The bytes hash to `expected`.
fn check_blob(
    reference: &PluginReference,
    what: &'static str,
    expected: &str,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    let actual = signing::plugin_digest(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(RegistryError::BlobDigest {
            reference: reference.to_string(),
            what,
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Checks a cached component and signature document against the manifest's
/// descriptors, then [`verify_signature`].
fn verify_cached(
    reference: &PluginReference,
    layers: &PluginLayers,
    component: &[u8],
    signature: &[u8],
    trust: Option<&TrustConfig>,
) -> Result<(SignatureDocument, TrustDecision), RegistryError> {
    check_blob(reference, "component", &layers.component.digest, component)?;
    check_blob(reference, "signature", &layers.signature.digest, signature)?;
    verify_signature(reference, component, signature, trust)
}

/// Checks that the signature document belongs to the component and that the
/// trust policy accepts it. The blobs' digests are checked already.
fn verify_signature(
    reference: &PluginReference,
    component: &[u8],
    signature: &[u8],
    trust: Option<&TrustConfig>,
) -> Result<(SignatureDocument, TrustDecision), RegistryError> {
    let label = PathBuf::from(reference.to_string());
    let untrusted = |source| RegistryError::Untrusted {
        reference: reference.to_string(),
        source,
    };
    let document = parse_document(&label, signature).map_err(untrusted)?;
    let actual = signing::plugin_digest(component);
    if document.digest != actual {
        return Err(untrusted(SignatureError::DigestMismatch {
            plugin: label.display().to_string(),
            actual,
            signed: document.digest,
        }));
    }
    let decision = signing::check_trust_document(trust, &label, component, || Ok(document.clone()))
        .map_err(untrusted)?;
    signing::verify_repository(&reference.to_string(), &document, &reference.repository)
        .map_err(untrusted)?;
    Ok((document, decision))
}

fn parse_document(label: &Path, bytes: &[u8]) -> Result<SignatureDocument, SignatureError> {
    signing::parse_signature(
        bytes,
        &format!("the signature layer of {}", label.display()),
    )
}

/// Downloads and verifies the plugin at `reference` (nothing is written).
pub async fn pull(
    reference: &PluginReference,
    trust: Option<&TrustConfig>,
) -> Result<Pulled, RegistryError> {
    let client = client(reference);
    let layers = fetch_layers(&client, reference).await?;
    download_verified(&client, reference, &layers, trust).await
}

/// Downloads the component and signature blobs `layers` names (each checked
/// against its descriptor's sha256 as it arrives), then [`verify_signature`].
async fn download_verified(
    client: &Client,
    reference: &PluginReference,
    layers: &PluginLayers,
    trust: Option<&TrustConfig>,
) -> Result<Pulled, RegistryError> {
    let component = download(
        client,
        reference,
        &layers.component,
        "component",
        MAX_COMPONENT_BYTES,
    )
    .await?;
    let signature = download(
        client,
        reference,
        &layers.signature,
        "signature",
        MAX_SIGNATURE_BYTES,
    )
    .await?;
    let (document, decision) = verify_signature(reference, &component, &signature, trust)?;
    Ok(Pulled {
        component,
        signature,
        document,
        manifest_digest: layers.manifest_digest.clone(),
        decision,
    })
}

/// Writes a pulled plugin as `DIR/<name>.wasm` and `DIR/<name>.wasm.sig`
/// (each written to a temporary file and renamed). Returns the plugin path.
pub fn install(dir: &Path, name: &str, pulled: &Pulled) -> Result<PathBuf, RegistryError> {
    std::fs::create_dir_all(dir).map_err(|source| RegistryError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let plugin = dir.join(format!("{name}.wasm"));
    // The signature first: a reader between the two renames sees a plugin
    // that does not match its signature, and refuses it.
    write_atomically(&signing::signature_path(&plugin), &pulled.signature)?;
    write_atomically(&plugin, &pulled.component)?;
    Ok(plugin)
}

/// Resolves `reference` to a verified local file for `run`: the manifest
/// always comes from the registry (a tag may have moved); the blobs come from
/// `cache` when it holds them with the right sha256, else from the registry
/// (then they are cached). Before the plugin is handed over, its version is
/// checked against the highest one run from the same repository
/// ([`super::rollback`]).
pub async fn resolve(
    reference: &PluginReference,
    trust: Option<&TrustConfig>,
    cache: &OciCache,
) -> Result<Resolved, RegistryError> {
    let client = client(reference);
    let layers = fetch_layers(&client, reference).await?;
    let digest = layers.component.digest.clone();
    if let Some(entry) = cache.read(&digest)? {
        match verify_cached(
            reference,
            &layers,
            &entry.component,
            &entry.signature,
            trust,
        ) {
            Ok(_) => {
                admit_version(reference, &layers, &entry.component, cache)?;
                let path = cache.component_path(&digest);
                tracing::info!(plugin = %reference, digest = %digest, path = %path.display(), "plugin taken from the OCI cache (sha256 verified)");
                return Ok(Resolved {
                    path,
                    component_digest: digest,
                    cache_hit: true,
                });
            }
            Err(RegistryError::BlobDigest { what, .. }) => tracing::warn!(
                plugin = %reference,
                digest = %digest,
                what,
                "the cached copy does not match the manifest: downloading it again"
            ),
            Err(other) => return Err(other),
        }
    }
    let pulled = download_verified(&client, reference, &layers, trust).await?;
    admit_version(reference, &layers, &pulled.component, cache)?;
    let path = cache.store(&digest, &pulled.component, &pulled.signature)?;
    tracing::info!(plugin = %reference, digest = %digest, path = %path.display(), "plugin downloaded into the OCI cache");
    Ok(Resolved {
        path,
        component_digest: digest,
        cache_hit: false,
    })
}

/// Rollback protection for a verified component: its manifest version must
/// not be older than the one last run from the repository, unless pinned.
fn admit_version(
    reference: &PluginReference,
    layers: &PluginLayers,
    component: &[u8],
    cache: &OciCache,
) -> Result<(), RegistryError> {
    let (_, version) =
        signing::plugin_identity(component).map_err(|reason| RegistryError::NotAPlugin {
            reference: reference.to_string(),
            reason,
        })?;
    let record = super::rollback::VersionRecord::new(cache.root());
    match record.admit(reference, &version, &layers.manifest_digest)? {
        super::rollback::Admission::Current => {}
        super::rollback::Admission::PinnedDowngrade { recorded } => tracing::warn!(
            plugin = %reference,
            version = %version,
            recorded = %recorded,
            "running an older plugin version than this host ran before from this repository: allowed because the reference pins its digest"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrustedPublisher;
    use crate::signing::KeyFile;

    fn descriptor(media_type: &str, bytes: &[u8]) -> OciDescriptor {
        OciDescriptor {
            media_type: media_type.to_string(),
            digest: signing::plugin_digest(bytes),
            size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        }
    }

    fn layers(component: &[u8], signature: &[u8]) -> PluginLayers {
        PluginLayers {
            component: descriptor(WASM_LAYER_MEDIA_TYPE, component),
            signature: descriptor(SIGNATURE_LAYER_MEDIA_TYPE, signature),
            manifest_digest: String::new(),
        }
    }

    fn listed(key: &KeyFile) -> TrustedPublisher {
        TrustedPublisher {
            key_id: key.key_id.clone(),
            public_key_b64: key.public_key_b64.clone(),
        }
    }

    fn policy(publisher: &KeyFile, certifier: Option<&KeyFile>) -> TrustConfig {
        TrustConfig {
            publishers: vec![listed(publisher)],
            require_signature: true,
            require_certification: certifier.is_some(),
            certifiers: certifier.map(listed).into_iter().collect(),
        }
    }

    fn reference() -> PluginReference {
        PluginReference::parse("oci://127.0.0.1:5000/sinks/file:1.0").expect("reference")
    }

    #[test]
    fn a_certified_artifact_passes_a_policy_that_requires_certification() {
        let publisher = signing::generate_key(Some("acme"));
        let lab = signing::generate_key(Some("lab"));
        let component = signing::test_component("file", "1.0.0");
        let mut document = publisher
            .sign(&component, Some("sinks/file"))
            .expect("sign");
        let unsigned_cert = serde_json::to_vec(&document).expect("json");
        let error = verify_cached(
            &reference(),
            &layers(&component, &unsigned_cert),
            &component,
            &unsigned_cert,
            Some(&policy(&publisher, Some(&lab))),
        )
        .expect_err("not certified");
        assert!(error.to_string().contains("is not certified"), "{error}");

        document.certification = Some(
            lab.certify(
                &document.digest,
                "suite/1",
                "sha256:00",
                vec!["init".into()],
            )
            .expect("certify"),
        );
        let signature = serde_json::to_vec(&document).expect("json");
        let (_, decision) = verify_cached(
            &reference(),
            &layers(&component, &signature),
            &component,
            &signature,
            Some(&policy(&publisher, Some(&lab))),
        )
        .expect("certified and signed");
        assert_eq!(
            decision,
            TrustDecision::Trusted {
                publisher: Some("acme".into()),
                certifier: Some("lab".into())
            }
        );
    }

    #[test]
    fn blobs_and_signature_must_match_the_manifest_and_each_other() {
        let publisher = signing::generate_key(Some("acme"));
        let component = signing::test_component("file", "1.0.0");
        let signature = serde_json::to_vec(
            &publisher
                .sign(&component, Some("sinks/file"))
                .expect("sign"),
        )
        .expect("json");
        let manifest = layers(&component, &signature);

        let mut tampered = component.clone();
        tampered[5] ^= 1;
        let error = verify_cached(&reference(), &manifest, &tampered, &signature, None)
            .expect_err("tampered");
        assert!(
            matches!(
                error,
                RegistryError::BlobDigest {
                    what: "component",
                    ..
                }
            ),
            "{error}"
        );
        let error =
            verify_cached(&reference(), &manifest, &component, b"{}", None).expect_err("signature");
        assert!(
            matches!(
                error,
                RegistryError::BlobDigest {
                    what: "signature",
                    ..
                }
            ),
            "{error}"
        );

        // A consistent artifact whose signature is for other bytes.
        let other = serde_json::to_vec(
            &publisher
                .sign(
                    &signing::test_component("file", "1.0.1"),
                    Some("sinks/file"),
                )
                .expect("sign"),
        )
        .expect("json");
        let error = verify_cached(
            &reference(),
            &layers(&component, &other),
            &component,
            &other,
            None,
        )
        .expect_err("signature for other bytes");
        assert!(
            error.to_string().contains("does not match its signature"),
            "{error}"
        );

        // Without a policy the digests are still checked; with one, the key.
        let (_, decision) = verify_cached(&reference(), &manifest, &component, &signature, None)
            .expect("no policy");
        assert_eq!(decision, TrustDecision::NotRequired);
        let stranger = signing::generate_key(Some("stranger"));
        let error = verify_cached(
            &reference(),
            &manifest,
            &component,
            &signature,
            Some(&policy(&stranger, None)),
        )
        .expect_err("unknown key");
        assert!(
            error.to_string().contains("not among trust.publishers"),
            "{error}"
        );
    }

    #[test]
    fn a_signature_for_another_repository_is_refused() {
        let publisher = signing::generate_key(Some("acme"));
        let component = signing::test_component("file", "1.0.0");
        for signed_for in [Some("sinks/other"), None] {
            let signature =
                serde_json::to_vec(&publisher.sign(&component, signed_for).expect("sign"))
                    .expect("json");
            for trust in [None, Some(policy(&publisher, None))] {
                let error = verify_cached(
                    &reference(),
                    &layers(&component, &signature),
                    &component,
                    &signature,
                    trust.as_ref(),
                )
                .expect_err("other repository");
                assert!(
                    error
                        .to_string()
                        .contains("served from repository `sinks/file`"),
                    "{signed_for:?}: {error}"
                );
            }
        }
    }
}
