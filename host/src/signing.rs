//! Plugin signatures: a plugin's identity is the sha256 of its component
//! bytes; a publisher signs that digest with Ed25519 into a small JSON
//! document kept beside the plugin (`PLUGIN.sig`), and the operator's trust
//! policy (`trust` in the config) names the publisher keys it accepts.
//!
//! What is signed is a domain-separated text, so a signature over a plugin
//! can never be mistaken for any other Ed25519 signature, and it binds the
//! plugin's identity as its embedded manifest states it, and, for a plugin
//! published to a registry, the repository it is published under:
//! `sinkhost.plugin-signature.v2\n<digest>\n<key id>\n<signed-at>\n<name>\n<version>\n<repository or empty>\n`.
//! Verification checks the name and version against the manifest of the
//! bytes being loaded, and a registry pull checks the repository against
//! the one it pulled from ([`verify_repository`]): a signature made for
//! plugin A 1.0 does not verify for plugin B or for A 2.0, nor for A served
//! from another repository. Version 1 documents
//! (`sinkhost.plugin-signature.v1`, which bound only the digest) are refused
//! with a message asking for a new signature.
//!
//! The document may also be embedded in the component, in a top-level
//! custom section `sinkhost-signature`; the digest that is signed leaves
//! every such section out ([`plugin_digest`]). A detached `PLUGIN.sig` is
//! read first, the embedded one only when there is no detached file.
//!
//! A certifier that ran `sinkhost certify` on the plugin adds a
//! [`Certification`] to the same document, signed with its own key over
//! `sinkhost.plugin-certification.v1\n<digest>\n<certifier key id>\n<suite>\n<report sha256>\n<certified-at>\n`;
//! an operator who sets `trust.require_certification` accepts only plugins
//! certified by one of `trust.certifiers`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::config::TrustConfig;
use crate::manifest::{section, SIGNATURE_SECTION};

/// Schema name of a signature document (and the signed text's first line).
pub const SIGNATURE_SCHEMA: &str = "sinkhost.plugin-signature.v2";
/// The previous schema, whose signature bound only the digest: refused
/// (re-sign the plugin with a current `sinkhost plugin sign`).
pub const UNBOUND_SIGNATURE_SCHEMA: &str = "sinkhost.plugin-signature.v1";
/// Schema name of a key file written by `sinkhost plugin keygen`.
pub const KEY_SCHEMA: &str = "sinkhost.plugin-signing-key.v1";
/// The one algorithm.
pub const ALGORITHM: &str = "ed25519";
/// Schema name of a certification (and its signed text's first line).
pub const CERTIFICATION_SCHEMA: &str = "sinkhost.plugin-certification.v1";

/// Why a plugin's signature is not accepted. Each case says what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No `PLUGIN.sig` beside the plugin and no embedded signature.
    #[error("{plugin} is not signed: no signature file {signature} and no embedded `sinkhost-signature` section (sign it with `sinkhost plugin sign --key KEY {plugin}`)")]
    Missing {
        /// The plugin.
        plugin: String,
        /// Where the signature was looked for.
        signature: String,
    },
    /// The signature file is not a signature document.
    #[error("signature file {signature} is not a valid signature document: {reason}")]
    Malformed {
        /// The signature file.
        signature: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin's bytes are not the ones that were signed.
    #[error("{plugin} does not match its signature: the plugin's sha256 is {actual}, the signature is for {signed} (the plugin was changed after signing)")]
    DigestMismatch {
        /// The plugin.
        plugin: String,
        /// Its digest now.
        actual: String,
        /// The digest that was signed.
        signed: String,
    },
    /// Signed by a key the trust policy does not list.
    #[error("{plugin} is signed by key `{key_id}`, which is not among trust.publishers")]
    UnknownKey {
        /// The plugin.
        plugin: String,
        /// The signer's key id.
        key_id: String,
    },
    /// The signature does not verify with the listed key.
    #[error("{plugin}: the signature by key `{key_id}` is invalid (forged, or made with another key under the same id)")]
    BadSignature {
        /// The plugin.
        plugin: String,
        /// The key id.
        key_id: String,
    },
    /// A version 1 signature: it binds neither name, version nor repository.
    #[error("{signature} is a {UNBOUND_SIGNATURE_SCHEMA} signature, which binds neither the plugin's name and version nor its repository; sinkhost no longer accepts it: ask the publisher to sign the plugin again with `sinkhost plugin sign` (see docs/plugin-signing.md, \"Migrating from v1 signatures\")")]
    Unbound {
        /// Where the signature was read.
        signature: String,
    },
    /// The signature names another plugin, version or repository than the
    /// one being loaded.
    #[error("{plugin}: the signature is for {what} `{signed}`, but {actual} (a signature made for one plugin, version or repository does not carry over to another)")]
    Binding {
        /// The plugin.
        plugin: String,
        /// `plugin name`, `version` or `repository`.
        what: &'static str,
        /// What the signature names.
        signed: String,
        /// What the plugin being loaded is.
        actual: String,
    },
    /// The policy requires certification and the signature carries none.
    #[error("{plugin} is not certified: trust.require_certification is on and its signature document carries no certification (certify it with `sinkhost certify --certifier-key KEY {plugin} --config CONFIG`)")]
    NotCertified {
        /// The plugin.
        plugin: String,
    },
    /// Certified by a key the trust policy does not list.
    #[error("{plugin} is certified by `{key_id}`, which is not among trust.certifiers")]
    UnknownCertifier {
        /// The plugin.
        plugin: String,
        /// The certifier's key id.
        key_id: String,
    },
    /// The certification is for other bytes, or its signature does not verify.
    #[error("{plugin}: the certification by `{key_id}` is invalid: {reason}")]
    BadCertification {
        /// The plugin.
        plugin: String,
        /// The certifier's key id.
        key_id: String,
        /// What does not hold.
        reason: String,
    },
}

/// The detached signature of a plugin (`PLUGIN.sig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureDocument {
    /// [`SIGNATURE_SCHEMA`].
    pub schema: String,
    /// `sha256:<hex>` of the component bytes.
    pub digest: String,
    /// The plugin's name, from its embedded manifest.
    #[serde(default)]
    pub plugin: String,
    /// The plugin's version, from its embedded manifest.
    #[serde(default)]
    pub version: String,
    /// The registry repository (e.g. `sinks/file`) the publisher signed the
    /// plugin for; `None` for a plugin that is not published to a registry
    /// (a registry refuses to serve it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The publisher's key id.
    pub key_id: String,
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// Standard base64 of the 64-byte Ed25519 signature.
    pub signature: String,
    /// When it was signed (RFC 3339, UTC).
    pub signed_at: String,
    /// Added by `sinkhost certify --certifier-key` when the plugin passed
    /// the certification suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certification: Option<Certification>,
}

/// A certifier's signed statement that the plugin with `digest` passed the
/// certification suite `suite`, with the sha256 of the JSON report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certification {
    /// [`CERTIFICATION_SCHEMA`].
    pub schema: String,
    /// `sha256:<hex>` of the certified component bytes.
    pub digest: String,
    /// The certifier's key id, as operators list it in `trust.certifiers`.
    pub key_id: String,
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// The suite that was run, e.g. `sinkhost-certify/1 (sinkhost 0.1.0)`.
    pub suite: String,
    /// `sha256:<hex>` of the JSON report the run produced.
    pub report_sha256: String,
    /// Names of the checks that passed.
    pub checks: Vec<String>,
    /// When the run finished (RFC 3339, UTC).
    pub certified_at: String,
    /// Standard base64 of the Ed25519 signature.
    pub signature: String,
}

/// A signing key as `sinkhost plugin keygen` writes it. Keep the file
/// private; publish `public_key_b64` with its `key_id`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// [`KEY_SCHEMA`].
    pub schema: String,
    /// The key's id, as operators list it in `trust.publishers`.
    pub key_id: String,
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// Standard base64 of the 32-byte Ed25519 secret seed.
    pub secret_key_b64: String,
    /// Standard base64 of the 32-byte public key.
    pub public_key_b64: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("key_id", &self.key_id)
            .field("public_key_b64", &self.public_key_b64)
            .finish_non_exhaustive()
    }
}

/// `sha256:<hex>` of a component's bytes with every top-level
/// `sinkhost-signature` custom section left out: what is signed and
/// certified. For a plugin without an embedded signature (and for bytes
/// that are not a WebAssembly binary) it is the sha256 of all its bytes.
pub fn plugin_digest(bytes: &[u8]) -> String {
    let unsigned = section::strip_custom(bytes, SIGNATURE_SECTION);
    let signed_bytes = unsigned.as_deref().unwrap_or(bytes);
    format!("sha256:{}", hex::encode(Sha256::digest(signed_bytes)))
}

/// Where a plugin's detached signature lives: `PLUGIN.sig`.
pub fn signature_path(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

/// The default key id of a public key: the first 16 hex digits of its sha256.
pub fn default_key_id(public_key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public_key.as_bytes()))[..16].to_string()
}

/// A new random signing key.
pub fn generate_key(key_id: Option<&str>) -> KeyFile {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::fill(&mut *seed);
    let signing = SigningKey::from_bytes(&seed);
    let public = signing.verifying_key();
    let engine = base64::engine::general_purpose::STANDARD;
    KeyFile {
        schema: KEY_SCHEMA.into(),
        key_id: key_id
            .map(str::to_string)
            .unwrap_or_else(|| default_key_id(&public)),
        algorithm: ALGORITHM.into(),
        secret_key_b64: engine.encode(seed.as_slice()),
        public_key_b64: engine.encode(public.as_bytes()),
    }
}

/// The text a publisher signs: every field of the document but the
/// signature and the certification, one per line. [`parse_signature`]
/// refuses fields with line breaks, so the text has one reading only.
fn signed_text(document: &SignatureDocument) -> String {
    format!(
        "{SIGNATURE_SCHEMA}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        document.digest,
        document.key_id,
        document.signed_at,
        document.plugin,
        document.version,
        document.repository.as_deref().unwrap_or("")
    )
}

/// The name and version a plugin's embedded manifest states: what a
/// signature binds.
pub fn plugin_identity(bytes: &[u8]) -> Result<(String, String), String> {
    match crate::manifest::Manifest::from_component(bytes) {
        Ok(Some(manifest)) => Ok((manifest.name, manifest.version)),
        Ok(None) => Err("it has no embedded manifest (a signature binds the plugin's name and version from its manifest: embed one with `sinkhost plugin manifest embed`)".into()),
        Err(err) => Err(format!("its embedded manifest is invalid: {err}")),
    }
}

/// Whether `text` can be one line of the signed text.
fn one_line(text: &str) -> bool {
    !text.contains(['\n', '\r'])
}

fn certification_text(certification: &Certification) -> String {
    format!(
        "{CERTIFICATION_SCHEMA}\n{}\n{}\n{}\n{}\n{}\n{}\n",
        certification.digest,
        certification.key_id,
        certification.suite,
        certification.report_sha256,
        certification.checks.join(","),
        certification.certified_at
    )
}

fn now_rfc3339() -> Result<String, String> {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|err| format!("formatting the time: {err}"))
}

/// Decodes a standard-base64 32-byte public key.
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|err| format!("not standard base64: {err}"))?;
    let array: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
        format!("an Ed25519 public key is 32 bytes, this is {}", bytes.len())
    })?;
    VerifyingKey::from_bytes(&array).map_err(|err| format!("not an Ed25519 public key: {err}"))
}

impl KeyFile {
    fn signing_key(&self) -> Result<SigningKey, String> {
        if self.algorithm != ALGORITHM {
            return Err(format!("algorithm `{}` is not {ALGORITHM}", self.algorithm));
        }
        let seed = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(self.secret_key_b64.trim())
                .map_err(|err| format!("secret_key_b64 is not standard base64: {err}"))?,
        );
        let seed: &[u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| format!("secret_key_b64 must hold 32 bytes, it holds {}", seed.len()))?;
        let key = SigningKey::from_bytes(seed);
        if base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes())
            != self.public_key_b64.trim()
        {
            return Err("public_key_b64 is not the public half of secret_key_b64".into());
        }
        Ok(key)
    }

    /// Signs `bytes` (a component with an embedded manifest) now, binding
    /// its name and version and, when given, the registry `repository` it
    /// is to be published under.
    pub fn sign(
        &self,
        bytes: &[u8],
        repository: Option<&str>,
    ) -> Result<SignatureDocument, String> {
        let key = self.signing_key()?;
        let (plugin, version) = plugin_identity(bytes)?;
        if let Some(repository) = repository {
            if repository.is_empty() || !one_line(repository) {
                return Err(format!(
                    "repository `{repository}` is not a repository path (e.g. sinks/file)"
                ));
            }
        }
        if !one_line(&self.key_id) || !one_line(&plugin) || !one_line(&version) {
            return Err("the key id, plugin name and version must not contain line breaks".into());
        }
        let mut document = SignatureDocument {
            schema: SIGNATURE_SCHEMA.into(),
            digest: plugin_digest(bytes),
            plugin,
            version,
            repository: repository.map(str::to_string),
            key_id: self.key_id.clone(),
            algorithm: ALGORITHM.into(),
            signature: String::new(),
            signed_at: now_rfc3339()?,
            certification: None,
        };
        let signature = key.sign(signed_text(&document).as_bytes());
        document.signature = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
        Ok(document)
    }

    /// Certifies the plugin whose digest is `digest`: the suite that passed,
    /// its checks and the sha256 of its JSON report.
    pub fn certify(
        &self,
        digest: &str,
        suite: &str,
        report_sha256: &str,
        checks: Vec<String>,
    ) -> Result<Certification, String> {
        let key = self.signing_key()?;
        let mut certification = Certification {
            schema: CERTIFICATION_SCHEMA.into(),
            digest: digest.to_string(),
            key_id: self.key_id.clone(),
            algorithm: ALGORITHM.into(),
            suite: suite.to_string(),
            report_sha256: report_sha256.to_string(),
            checks,
            certified_at: now_rfc3339()?,
            signature: String::new(),
        };
        let signature = key.sign(certification_text(&certification).as_bytes());
        certification.signature =
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
        Ok(certification)
    }
}

/// Reads the signature document of `plugin`: the detached `PLUGIN.sig`
/// first, else the one embedded in the plugin's `sinkhost-signature`
/// section.
pub fn read_signature(plugin: &Path) -> Result<SignatureDocument, SignatureError> {
    read_detached_signature(plugin).or_else(|missing| match missing {
        SignatureError::Missing { .. } => match std::fs::read(plugin) {
            Ok(bytes) => embedded_signature(plugin, &bytes).unwrap_or(Err(missing)),
            Err(_) => Err(missing),
        },
        other => Err(other),
    })
}

/// [`read_signature`] with the plugin's bytes already read (the very bytes
/// that are checked and compiled).
pub fn read_signature_of(plugin: &Path, bytes: &[u8]) -> Result<SignatureDocument, SignatureError> {
    read_detached_signature(plugin).or_else(|missing| match missing {
        SignatureError::Missing { .. } => embedded_signature(plugin, bytes).unwrap_or(Err(missing)),
        other => Err(other),
    })
}

/// The signature document embedded in `bytes`, if there is one.
fn embedded_signature(
    plugin: &Path,
    bytes: &[u8],
) -> Option<Result<SignatureDocument, SignatureError>> {
    let location = format!(
        "{} (embedded `{SIGNATURE_SECTION}` section)",
        plugin.display()
    );
    match section::read_custom(bytes, SIGNATURE_SECTION) {
        Ok(None) => None,
        Ok(Some(data)) => Some(parse_signature(data, &location)),
        Err(err) => Some(Err(SignatureError::Malformed {
            signature: location,
            reason: err.to_string(),
        })),
    }
}

/// Reads the detached signature document beside `plugin`.
fn read_detached_signature(plugin: &Path) -> Result<SignatureDocument, SignatureError> {
    let path = signature_path(plugin);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignatureError::Missing {
                plugin: plugin.display().to_string(),
                signature: path.display().to_string(),
            })
        }
        Err(err) => {
            return Err(SignatureError::Malformed {
                signature: path.display().to_string(),
                reason: err.to_string(),
            })
        }
    };
    parse_signature(text.as_bytes(), &path.display().to_string())
}

/// Parses a signature document found at `location` (a file, a section, a
/// registry layer): only the current schema is accepted.
pub fn parse_signature(text: &[u8], location: &str) -> Result<SignatureDocument, SignatureError> {
    let document: SignatureDocument =
        serde_json::from_slice(text).map_err(|err| SignatureError::Malformed {
            signature: location.to_string(),
            reason: err.to_string(),
        })?;
    if document.schema == UNBOUND_SIGNATURE_SCHEMA {
        return Err(SignatureError::Unbound {
            signature: location.to_string(),
        });
    }
    let lines = [
        &document.digest,
        &document.key_id,
        &document.signed_at,
        &document.plugin,
        &document.version,
    ];
    if !lines.iter().all(|field| one_line(field))
        || !document.repository.as_deref().is_none_or(one_line)
    {
        return Err(SignatureError::Malformed {
            signature: location.to_string(),
            reason: "a field holds a line break".into(),
        });
    }
    if document.schema != SIGNATURE_SCHEMA || document.algorithm != ALGORITHM {
        return Err(SignatureError::Malformed {
            signature: location.to_string(),
            reason: format!("expected schema {SIGNATURE_SCHEMA} and algorithm {ALGORITHM}"),
        });
    }
    Ok(document)
}

/// Checks `document` against the plugin's `bytes` and the trusted keys
/// (`(key id, public key)` pairs). Returns the signer's key id.
pub fn verify(
    plugin: &Path,
    bytes: &[u8],
    document: &SignatureDocument,
    trusted: &[(String, VerifyingKey)],
) -> Result<String, SignatureError> {
    let name = plugin.display().to_string();
    let actual = plugin_digest(bytes);
    if actual != document.digest {
        return Err(SignatureError::DigestMismatch {
            plugin: name,
            actual,
            signed: document.digest.clone(),
        });
    }
    let Some((_, key)) = trusted
        .iter()
        .find(|(key_id, _)| *key_id == document.key_id)
    else {
        return Err(SignatureError::UnknownKey {
            plugin: name,
            key_id: document.key_id.clone(),
        });
    };
    let bad = || SignatureError::BadSignature {
        plugin: name.clone(),
        key_id: document.key_id.clone(),
    };
    let signature_bytes = base64::engine::general_purpose::STANDARD
        .decode(document.signature.trim())
        .map_err(|_| bad())?;
    let signature = ed25519_dalek::Signature::from_slice(&signature_bytes).map_err(|_| bad())?;
    key.verify(signed_text(document).as_bytes(), &signature)
        .map_err(|_| bad())?;
    verify_identity(plugin, bytes, document)?;
    Ok(document.key_id.clone())
}

/// The name and version the (verified) signature binds are the ones the
/// plugin's embedded manifest states.
fn verify_identity(
    plugin: &Path,
    bytes: &[u8],
    document: &SignatureDocument,
) -> Result<(), SignatureError> {
    let name = plugin.display().to_string();
    let (actual_name, actual_version) =
        plugin_identity(bytes).map_err(|reason| SignatureError::Binding {
            plugin: name.clone(),
            what: "plugin name",
            signed: document.plugin.clone(),
            actual: reason,
        })?;
    if document.plugin != actual_name {
        return Err(SignatureError::Binding {
            plugin: name,
            what: "plugin name",
            signed: document.plugin.clone(),
            actual: format!("this plugin's manifest names `{actual_name}`"),
        });
    }
    if document.version != actual_version {
        return Err(SignatureError::Binding {
            plugin: name,
            what: "version",
            signed: document.version.clone(),
            actual: format!("this plugin's manifest says version `{actual_version}`"),
        });
    }
    Ok(())
}

/// A plugin served by a registry: its signature must name the repository
/// it was pulled from (`label` names the reference in the message).
pub fn verify_repository(
    label: &str,
    document: &SignatureDocument,
    repository: &str,
) -> Result<(), SignatureError> {
    match document.repository.as_deref() {
        Some(signed) if signed == repository => Ok(()),
        Some(signed) => Err(SignatureError::Binding {
            plugin: label.to_string(),
            what: "repository",
            signed: signed.to_string(),
            actual: format!("it was served from repository `{repository}`"),
        }),
        None => Err(SignatureError::Binding {
            plugin: label.to_string(),
            what: "repository",
            signed: "(none)".to_string(),
            actual: format!(
                "it was served from repository `{repository}`: the publisher must sign it for that repository (`sinkhost plugin sign --repository {repository}`)"
            ),
        }),
    }
}

/// Checks the certification in `document` against the plugin's `bytes`
/// and the trusted certifier keys. Returns the certifier's key id.
pub fn verify_certification(
    plugin: &Path,
    bytes: &[u8],
    document: &SignatureDocument,
    certifiers: &[(String, VerifyingKey)],
) -> Result<String, SignatureError> {
    let name = plugin.display().to_string();
    let Some(certification) = &document.certification else {
        return Err(SignatureError::NotCertified { plugin: name });
    };
    let bad = |reason: String| SignatureError::BadCertification {
        plugin: name.clone(),
        key_id: certification.key_id.clone(),
        reason,
    };
    if certification.schema != CERTIFICATION_SCHEMA || certification.algorithm != ALGORITHM {
        return Err(bad(format!(
            "expected schema {CERTIFICATION_SCHEMA} and algorithm {ALGORITHM}"
        )));
    }
    let actual = plugin_digest(bytes);
    if actual != certification.digest {
        return Err(bad(format!(
            "it certifies {}, the plugin's sha256 is {actual} (the plugin was changed after certification)",
            certification.digest
        )));
    }
    let Some((_, key)) = certifiers
        .iter()
        .find(|(key_id, _)| *key_id == certification.key_id)
    else {
        return Err(SignatureError::UnknownCertifier {
            plugin: name,
            key_id: certification.key_id.clone(),
        });
    };
    let signature = base64::engine::general_purpose::STANDARD
        .decode(certification.signature.trim())
        .ok()
        .and_then(|bytes| ed25519_dalek::Signature::from_slice(&bytes).ok())
        .ok_or_else(|| bad("its signature is not a base64 Ed25519 signature".into()))?;
    key.verify(certification_text(certification).as_bytes(), &signature)
        .map_err(|_| bad("its signature does not verify (forged, altered, or made with another key under the same id)".into()))?;
    Ok(certification.key_id.clone())
}

/// What the trust policy decided about a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustDecision {
    /// Accepted by the policy.
    Trusted {
        /// The publisher whose signature verified, when one was required.
        publisher: Option<String>,
        /// The certifier whose certification verified, when one was required.
        certifier: Option<String>,
    },
    /// No policy requires a signature and none was checked.
    NotRequired,
}

/// Applies the operator's trust policy to a plugin's bytes (the very bytes
/// the host compiles, so nothing can change between the check and the load).
pub fn check_trust(
    policy: Option<&TrustConfig>,
    plugin: &Path,
    bytes: &[u8],
) -> Result<TrustDecision, SignatureError> {
    check_trust_document(policy, plugin, bytes, || read_signature_of(plugin, bytes))
}

/// [`check_trust`] with the signature document from elsewhere (a registry,
/// a custom section): `document` is only called when the policy needs it.
pub fn check_trust_document(
    policy: Option<&TrustConfig>,
    plugin: &Path,
    bytes: &[u8],
    document: impl FnOnce() -> Result<SignatureDocument, SignatureError>,
) -> Result<TrustDecision, SignatureError> {
    let Some(policy) = policy else {
        return Ok(TrustDecision::NotRequired);
    };
    if !policy.require_signature && !policy.require_certification {
        return Ok(TrustDecision::NotRequired);
    }
    let keys = |list: Result<Vec<(String, VerifyingKey)>, String>, location: &str| {
        list.map_err(|reason| SignatureError::Malformed {
            signature: location.to_string(),
            reason,
        })
    };
    let document = document()?;
    let publisher = if policy.require_signature {
        let trusted = keys(policy.trusted_keys(), "trust.publishers")?;
        Some(verify(plugin, bytes, &document, &trusted)?)
    } else {
        None
    };
    let certifier = if policy.require_certification {
        let certifiers = keys(policy.certifier_keys(), "trust.certifiers")?;
        Some(verify_certification(plugin, bytes, &document, &certifiers)?)
    } else {
        None
    };
    Ok(TrustDecision::Trusted {
        publisher,
        certifier,
    })
}

#[cfg(test)]
/// A component header with an embedded manifest for `name` `version`,
/// then `tail` as a custom section (so tests can flip bytes).
pub(crate) fn test_component(name: &str, version: &str) -> Vec<u8> {
    let manifest = serde_json::json!({
        "schema": crate::manifest::MANIFEST_SCHEMA,
        "name": name,
        "version": version,
        "publisher": "acme",
        "description": "A test sink.",
        "license": "MIT",
        "wit_world": "sinkhost:sink/plugin@0.1.0",
    });
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
    bytes.extend([0, 9, 4, b't', b'a', b'i', b'l', b'b', b'y', b't', b'e']);
    section::replace_custom(
        &bytes,
        crate::manifest::MANIFEST_SECTION,
        manifest.to_string().as_bytes(),
    )
    .expect("embed manifest")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str, version: &str) -> Vec<u8> {
        test_component(name, version)
    }

    fn trusted(key: &KeyFile) -> Vec<(String, VerifyingKey)> {
        vec![(
            key.key_id.clone(),
            decode_public_key(&key.public_key_b64).expect("public key"),
        )]
    }

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let key = generate_key(Some("acme-2026"));
        let plugin = Path::new("sink.wasm");
        let bytes = component("file", "1.0.0");
        let document = key.sign(&bytes, None).expect("sign");
        assert_eq!(
            verify(plugin, &bytes, &document, &trusted(&key)),
            Ok("acme-2026".into())
        );

        let mut flipped = bytes.clone();
        flipped[5] ^= 1;
        assert!(matches!(
            verify(plugin, &flipped, &document, &trusted(&key)),
            Err(SignatureError::DigestMismatch { .. })
        ));

        let stranger = generate_key(Some("acme-2026"));
        assert!(matches!(
            verify(plugin, &bytes, &document, &trusted(&stranger)),
            Err(SignatureError::BadSignature { .. })
        ));

        let other_id = generate_key(None);
        assert!(matches!(
            verify(plugin, &bytes, &document, &trusted(&other_id)),
            Err(SignatureError::UnknownKey { .. })
        ));

        let mut later = document.clone();
        later.signed_at = "2030-01-01T00:00:00Z".into();
        assert!(matches!(
            verify(plugin, &bytes, &later, &trusted(&key)),
            Err(SignatureError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_certification_verifies_only_for_its_bytes_and_certifier() {
        let publisher = generate_key(Some("acme"));
        let certifier = generate_key(Some("lab"));
        let plugin = Path::new("sink.wasm");
        let bytes = component("file", "1.0.0");
        let mut document = publisher.sign(&bytes, None).expect("sign");
        assert!(matches!(
            verify_certification(plugin, &bytes, &document, &trusted(&certifier)),
            Err(SignatureError::NotCertified { .. })
        ));
        let certification = certifier
            .certify(
                &document.digest,
                "suite/1",
                "sha256:00",
                vec!["init".into(), "write".into()],
            )
            .expect("certify");
        document.certification = Some(certification);
        assert_eq!(
            verify_certification(plugin, &bytes, &document, &trusted(&certifier)),
            Ok("lab".into())
        );
        assert!(matches!(
            verify_certification(plugin, &bytes, &document, &trusted(&publisher)),
            Err(SignatureError::UnknownCertifier { .. })
        ));
        let impostor = generate_key(Some("lab"));
        assert!(matches!(
            verify_certification(plugin, &bytes, &document, &trusted(&impostor)),
            Err(SignatureError::BadCertification { .. })
        ));
        let mut flipped = bytes.clone();
        flipped[3] ^= 1;
        let error = verify_certification(plugin, &flipped, &document, &trusted(&certifier))
            .expect_err("changed bytes");
        assert!(
            error.to_string().contains("changed after certification"),
            "{error}"
        );
        let mut widened = document.clone();
        if let Some(certification) = widened.certification.as_mut() {
            certification.checks.push("throughput".into());
        }
        assert!(matches!(
            verify_certification(plugin, &bytes, &widened, &trusted(&certifier)),
            Err(SignatureError::BadCertification { .. })
        ));
    }

    #[test]
    fn a_key_file_whose_halves_disagree_is_refused() {
        let mut key = generate_key(None);
        key.public_key_b64 = generate_key(None).public_key_b64;
        assert!(key
            .sign(&component("file", "1.0.0"), None)
            .expect_err("mismatch")
            .contains("public half"));
        assert!(
            !format!("{key:?}").contains(&key.secret_key_b64),
            "Debug never shows the secret"
        );
    }

    #[test]
    fn an_embedded_signature_leaves_itself_out_of_the_digest() {
        let key = generate_key(Some("acme"));
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin = dir.path().join("p.wasm");
        let bytes = component("file", "1.0.0");
        assert_eq!(
            plugin_digest(&bytes),
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            "without an embedded signature the digest is the plain sha256"
        );
        let document = key.sign(&bytes, None).expect("sign");
        let text = serde_json::to_vec(&document).expect("json");
        let signed = section::replace_custom(&bytes, SIGNATURE_SECTION, &text).expect("embed");
        assert_eq!(plugin_digest(&signed), document.digest);
        std::fs::write(&plugin, &signed).expect("write");
        assert_eq!(read_signature(&plugin), Ok(document.clone()));
        assert_eq!(read_signature_of(&plugin, &signed), Ok(document.clone()));
        assert_eq!(
            verify(&plugin, &signed, &document, &trusted(&key)),
            Ok("acme".into())
        );
        let mut flipped = signed.clone();
        flipped[13] ^= 1;
        assert!(matches!(
            verify(&plugin, &flipped, &document, &trusted(&key)),
            Err(SignatureError::DigestMismatch { .. })
        ));
        std::fs::write(signature_path(&plugin), "{not json").expect("write");
        assert!(
            matches!(
                read_signature(&plugin),
                Err(SignatureError::Malformed { .. })
            ),
            "the detached file is read first"
        );
    }

    #[test]
    fn a_missing_or_malformed_signature_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin = dir.path().join("p.wasm");
        assert!(matches!(
            read_signature(&plugin),
            Err(SignatureError::Missing { .. })
        ));
        std::fs::write(signature_path(&plugin), "{not json").expect("write");
        let error = read_signature(&plugin).expect_err("malformed").to_string();
        assert!(
            error.contains("p.wasm.sig") && error.contains("not a valid signature document"),
            "{error}"
        );
    }

    #[test]
    fn a_signature_binds_the_plugin_name_version_and_repository() {
        let key = generate_key(Some("acme"));
        let plugin = Path::new("sink.wasm");
        let a1 = component("file", "1.0.0");
        let document = key.sign(&a1, Some("sinks/file")).expect("sign");
        assert_eq!(document.plugin, "file");
        assert_eq!(document.version, "1.0.0");
        assert_eq!(document.repository.as_deref(), Some("sinks/file"));
        assert_eq!(
            verify(plugin, &a1, &document, &trusted(&key)),
            Ok("acme".into())
        );

        // The document moved to another plugin or version: other bytes.
        for other in [component("http", "1.0.0"), component("file", "2.0.0")] {
            assert!(matches!(
                verify(plugin, &other, &document, &trusted(&key)),
                Err(SignatureError::DigestMismatch { .. })
            ));
        }
        // The bound fields edited to fit: the signature no longer verifies.
        let edits: [fn(&mut SignatureDocument); 4] = [
            |d: &mut SignatureDocument| d.plugin = "http".into(),
            |d: &mut SignatureDocument| d.version = "2.0.0".into(),
            |d: &mut SignatureDocument| d.repository = Some("sinks/http".into()),
            |d: &mut SignatureDocument| d.repository = None,
        ];
        for edit in edits {
            let mut edited = document.clone();
            edit(&mut edited);
            assert!(
                matches!(
                    verify(plugin, &a1, &edited, &trusted(&key)),
                    Err(SignatureError::BadSignature { .. })
                ),
                "{edited:?}"
            );
        }

        // A publisher who signs a name that is not the manifest's (by hand,
        // with a valid key): refused after the signature verifies.
        let mut lying = document.clone();
        lying.plugin = "http".into();
        let signing = key.signing_key().expect("key");
        lying.signature = base64::engine::general_purpose::STANDARD
            .encode(signing.sign(signed_text(&lying).as_bytes()).to_bytes());
        let error = verify(plugin, &a1, &lying, &trusted(&key)).expect_err("lying name");
        assert!(
            matches!(
                error,
                SignatureError::Binding {
                    what: "plugin name",
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("manifest names `file`"),
            "{error}"
        );

        // The repository: only the one it was signed for.
        assert_eq!(verify_repository("ref", &document, "sinks/file"), Ok(()));
        let error = verify_repository("ref", &document, "sinks/other").expect_err("other repo");
        assert!(
            error.to_string().contains("repository `sinks/file`")
                && error.to_string().contains("`sinks/other`"),
            "{error}"
        );
        let local = key.sign(&a1, None).expect("sign");
        let error = verify_repository("ref", &local, "sinks/file").expect_err("unbound");
        assert!(
            error.to_string().contains("--repository sinks/file"),
            "{error}"
        );
    }

    #[test]
    fn a_plugin_without_a_manifest_cannot_be_signed() {
        let key = generate_key(Some("acme"));
        let error = key
            .sign(b"\0asm\x0d\x00\x01\x00", None)
            .expect_err("no manifest");
        assert!(error.contains("no embedded manifest"), "{error}");
    }

    #[test]
    fn a_v1_signature_is_refused_with_the_migration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin = dir.path().join("p.wasm");
        let v1 = serde_json::json!({
            "schema": UNBOUND_SIGNATURE_SCHEMA,
            "digest": plugin_digest(b"x"),
            "key_id": "acme",
            "algorithm": ALGORITHM,
            "signature": "AAAA",
            "signed_at": "2026-01-01T00:00:00Z",
        });
        std::fs::write(signature_path(&plugin), v1.to_string()).expect("write");
        let error = read_signature(&plugin).expect_err("v1");
        assert!(matches!(error, SignatureError::Unbound { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("sinkhost.plugin-signature.v1") && text.contains("sign the plugin again"),
            "{text}"
        );
    }

    #[test]
    fn a_field_with_a_line_break_is_malformed() {
        let key = generate_key(Some("acme"));
        let bytes = component("file", "1.0.0");
        let mut document = key.sign(&bytes, None).expect("sign");
        document.repository = Some("sinks/file\nother".into());
        let text = serde_json::to_vec(&document).expect("json");
        assert!(matches!(
            parse_signature(&text, "x.sig"),
            Err(SignatureError::Malformed { .. })
        ));
    }
}
