//! `trust`: which publishers' plugins this host runs. With the section,
//! `sinkhost run` and `validate` refuse a plugin unless its detached
//! signature (`PLUGIN.sig`) verifies with one of the listed keys, and, with
//! `require_certification`, unless it also carries a certification signed by
//! one of `certifiers` (see `sinkhost certify`).

use serde::{Deserialize, Serialize};

use super::Invalid;

/// The operator's trust policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Publisher keys whose signatures are accepted.
    #[serde(default)]
    pub publishers: Vec<TrustedPublisher>,
    /// Refuse a plugin without a valid signature by a listed publisher.
    #[serde(default = "default_require_signature")]
    pub require_signature: bool,
    /// Refuse a plugin unless its signature document carries a valid
    /// certification by one of `certifiers`.
    #[serde(default)]
    pub require_certification: bool,
    /// Certifier keys whose certifications are accepted.
    #[serde(default)]
    pub certifiers: Vec<TrustedPublisher>,
}

fn default_require_signature() -> bool {
    true
}

/// One trusted key: a publisher's (`publishers`) or a certifier's
/// (`certifiers`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedPublisher {
    /// The key id its signatures name (`sinkhost plugin keygen` prints it).
    pub key_id: String,
    /// Standard base64 of its 32-byte Ed25519 public key.
    pub public_key_b64: String,
}

impl TrustConfig {
    /// The listed keys, decoded.
    pub fn trusted_keys(&self) -> Result<Vec<(String, ed25519_dalek::VerifyingKey)>, String> {
        decode_keys(&self.publishers)
    }

    /// The listed certifier keys, decoded.
    pub fn certifier_keys(&self) -> Result<Vec<(String, ed25519_dalek::VerifyingKey)>, String> {
        decode_keys(&self.certifiers)
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        validate_keys(&self.publishers, "trust.publishers")?;
        validate_keys(&self.certifiers, "trust.certifiers")?;
        if self.require_signature && self.publishers.is_empty() {
            return Err(Invalid::new(
                "trust.publishers",
                "require_signature is on but no publisher is trusted: list at least one key",
            ));
        }
        if self.require_certification && self.certifiers.is_empty() {
            return Err(Invalid::new(
                "trust.certifiers",
                "require_certification is on but no certifier is trusted: list at least one key",
            ));
        }
        Ok(())
    }
}

fn decode_keys(
    keys: &[TrustedPublisher],
) -> Result<Vec<(String, ed25519_dalek::VerifyingKey)>, String> {
    keys.iter()
        .map(|publisher| {
            crate::signing::decode_public_key(&publisher.public_key_b64)
                .map(|key| (publisher.key_id.clone(), key))
                .map_err(|message| format!("key `{}`: {message}", publisher.key_id))
        })
        .collect()
}

fn validate_keys(keys: &[TrustedPublisher], list: &str) -> Result<(), Invalid> {
    let mut seen = std::collections::HashSet::new();
    for (index, publisher) in keys.iter().enumerate() {
        let location = format!("{list}[{index}]");
        if publisher.key_id.trim().is_empty() {
            return Err(Invalid::new(
                format!("{location}.key_id"),
                "must not be empty",
            ));
        }
        if !seen.insert(publisher.key_id.as_str()) {
            return Err(Invalid::new(
                format!("{location}.key_id"),
                format!("`{}` is listed twice", publisher.key_id),
            ));
        }
        crate::signing::decode_public_key(&publisher.public_key_b64)
            .map_err(|message| Invalid::new(format!("{location}.public_key_b64"), message))?;
    }
    Ok(())
}
