//! Plugin signatures: a plugin's identity is the sha256 of its component
//! bytes; a publisher signs that digest with Ed25519 into a small JSON
//! document kept beside the plugin (`PLUGIN.sig`), and the operator's trust
//! policy (`trust` in the config) names the publisher keys it accepts.
//!
//! What is signed is a domain-separated text, so a signature over a plugin
//! can never be mistaken for any other Ed25519 signature:
//! `sinkhost.plugin-signature.v1\n<digest>\n<key id>\n<signed-at>\n`.
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

/// Schema name of a signature document (and the signed text's first line).
pub const SIGNATURE_SCHEMA: &str = "sinkhost.plugin-signature.v1";
/// Schema name of a key file written by `sinkhost plugin keygen`.
pub const KEY_SCHEMA: &str = "sinkhost.plugin-signing-key.v1";
/// The one algorithm.
pub const ALGORITHM: &str = "ed25519";
/// Schema name of a certification (and its signed text's first line).
pub const CERTIFICATION_SCHEMA: &str = "sinkhost.plugin-certification.v1";

/// Why a plugin's signature is not accepted. Each case says what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No `PLUGIN.sig` beside the plugin.
    #[error("{plugin} is not signed: no signature file {signature} (sign it with `sinkhost plugin sign --key KEY {plugin}`)")]
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

/// `sha256:<hex>` of a component's bytes: its identity.
pub fn plugin_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
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

fn signed_text(digest: &str, key_id: &str, signed_at: &str) -> String {
    format!("{SIGNATURE_SCHEMA}\n{digest}\n{key_id}\n{signed_at}\n")
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

    /// Signs `bytes` (a component) now.
    pub fn sign(&self, bytes: &[u8]) -> Result<SignatureDocument, String> {
        let key = self.signing_key()?;
        let digest = plugin_digest(bytes);
        let signed_at = now_rfc3339()?;
        let signature = key.sign(signed_text(&digest, &self.key_id, &signed_at).as_bytes());
        Ok(SignatureDocument {
            schema: SIGNATURE_SCHEMA.into(),
            digest,
            key_id: self.key_id.clone(),
            algorithm: ALGORITHM.into(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
            signed_at,
            certification: None,
        })
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

/// Reads the signature document beside `plugin`.
pub fn read_signature(plugin: &Path) -> Result<SignatureDocument, SignatureError> {
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
    let document: SignatureDocument =
        serde_json::from_str(&text).map_err(|err| SignatureError::Malformed {
            signature: path.display().to_string(),
            reason: err.to_string(),
        })?;
    if document.schema != SIGNATURE_SCHEMA || document.algorithm != ALGORITHM {
        return Err(SignatureError::Malformed {
            signature: path.display().to_string(),
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
    key.verify(
        signed_text(&document.digest, &document.key_id, &document.signed_at).as_bytes(),
        &signature,
    )
    .map_err(|_| bad())?;
    Ok(document.key_id.clone())
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
    check_trust_document(policy, plugin, bytes, || read_signature(plugin))
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
mod tests {
    use super::*;

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
        let bytes = b"\0asm component bytes".to_vec();
        let document = key.sign(&bytes).expect("sign");
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
        let bytes = b"\0asm component".to_vec();
        let mut document = publisher.sign(&bytes).expect("sign");
        assert!(matches!(
            verify_certification(plugin, &bytes, &document, &trusted(&certifier)),
            Err(SignatureError::NotCertified { .. })
        ));
        let certification = certifier
            .certify(&document.digest, "suite/1", "sha256:00", vec!["init".into(), "write".into()])
            .expect("certify");
        document.certification = Some(certification);
        assert_eq!(verify_certification(plugin, &bytes, &document, &trusted(&certifier)), Ok("lab".into()));
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
        let error = verify_certification(plugin, &flipped, &document, &trusted(&certifier)).expect_err("changed bytes");
        assert!(error.to_string().contains("changed after certification"), "{error}");
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
            .sign(b"x")
            .expect_err("mismatch")
            .contains("public half"));
        assert!(
            !format!("{key:?}").contains(&key.secret_key_b64),
            "Debug never shows the secret"
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
}
