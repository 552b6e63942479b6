//! Payload encryption in the host: a sink only ever sees the encrypted
//! envelope, never the key.
//!
//! Two envelope versions, both a JSON object with the single key
//! `_nats_sinks_encryption` (the full specification is
//! `docs/payload-encryption.md`):
//!
//! - **v1** (`nats_sinks.encrypted_payload.v1`): exactly the reference
//!   `nats-sinks` 0.4.3 format, byte for byte (compact, sorted keys, ASCII).
//!   AES-256-GCM with a random 96-bit nonce and no associated data, so a v1
//!   ciphertext can be moved to another record undetected.
//! - **v2** (`sinkhost.encrypted_payload.v2`): the same AEAD with the
//!   canonical JSON `{"schema","stream","stream_sequence","subject"}` as
//!   associated data, binding the ciphertext to the message it came from; no
//!   plaintext hash in the clear.
//!
//! [`decrypt`] reads both, and also the reference's AES-256-CCM v1 envelopes
//! (sinkhost never writes CCM).

use std::collections::BTreeMap;
use std::sync::Arc;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, AesGcm};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::config::{read_secret_env, EncryptionConfig, Invalid, KeySource, SecretError};
use crate::security::custody::json::{self, Json};
use crate::security::subjects;

/// The single root key of every encrypted payload.
pub const ENVELOPE_KEY: &str = "_nats_sinks_encryption";
/// Schema of the reference's v1 envelope.
pub const SCHEMA_V1: &str = "nats_sinks.encrypted_payload.v1";
/// Schema of sinkhost's v2 envelope.
pub const SCHEMA_V2: &str = "sinkhost.encrypted_payload.v2";
/// The message fields a v2 envelope is bound to, in `aad_fields` order.
pub const V2_AAD_FIELDS: [&str; 3] = ["subject", "stream", "stream_sequence"];

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const GCM_NONCE_BYTES: usize = 12;
const GCM_TAG_BYTES: usize = 16;

/// A 256-bit key, wiped from memory when dropped; never printed.
#[derive(Clone)]
struct AesKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(<redacted>)")
    }
}

/// Why keys could not be loaded. Messages name the configuration field and
/// the environment variable, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The `encryption` section is not valid.
    #[error("invalid config at `{}`: {}", .0.location, .0.message)]
    Config(Invalid),
    /// The variable is unset, empty or not UTF-8.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The variable's value is not strict base64.
    #[error(
        "environment variable {variable} (named by `{field}`) is not valid base64 \
         (standard alphabet, padded, no whitespace)"
    )]
    NotBase64 {
        /// The config field naming the variable.
        field: String,
        /// The variable.
        variable: String,
    },
    /// The decoded key is not 32 bytes.
    #[error("environment variable {variable} (named by `{field}`) decodes to {length} bytes; AES-256 needs exactly 32")]
    WrongLength {
        /// The config field naming the variable (or `key ring` for keys
        /// given directly).
        field: String,
        /// The variable.
        variable: String,
        /// Decoded length.
        length: usize,
    },
    /// One key id was given two different keys.
    #[error("key_id `{key_id}` is given two different keys")]
    Conflict {
        /// The key id.
        key_id: String,
    },
    /// A key id is empty, too long or has control characters.
    #[error(
        "key_id {0:?} is not usable (empty, longer than 128 characters, or control characters)"
    )]
    BadKeyId(String),
}

/// Keys by `key_id`, for decryption (and held by an [`Encryptor`]).
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, AesKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// Strict base64 (standard alphabet, padding required) of exactly 32 bytes.
fn decode_key(text: &str, field: &str, variable: &str) -> Result<[u8; 32], KeyError> {
    let decoded = Zeroizing::new(
        B64.decode(text.as_bytes())
            .map_err(|_| KeyError::NotBase64 {
                field: field.to_string(),
                variable: variable.to_string(),
            })?,
    );
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| KeyError::WrongLength {
        field: field.to_string(),
        variable: variable.to_string(),
        length: decoded.len(),
    })
}

impl KeyRing {
    /// An empty ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every key the `encryption` section names (the keys of enabled
    /// policies and all `decrypt_keys`), read from the environment.
    pub fn from_config(config: &EncryptionConfig) -> Result<Self, KeyError> {
        config.validate().map_err(KeyError::Config)?;
        let mut ring = Self::new();
        for KeySource {
            key_id,
            field,
            variable,
        } in config.key_sources()
        {
            let text = Zeroizing::new(read_secret_env(&field, &variable)?);
            let key = decode_key(&text, &field, &variable)?;
            ring.insert(&key_id, key)?;
        }
        Ok(ring)
    }

    /// Adds a raw key. Adding the same key again is fine; a different key
    /// under a known id is a [`KeyError::Conflict`].
    pub fn insert(&mut self, key_id: &str, key: [u8; 32]) -> Result<(), KeyError> {
        let key = Zeroizing::new(key);
        if key_id.trim().is_empty()
            || key_id.chars().count() > 128
            || key_id.chars().any(char::is_control)
        {
            return Err(KeyError::BadKeyId(key_id.to_string()));
        }
        match self.keys.get(key_id) {
            Some(existing) if *existing.0 != *key => Err(KeyError::Conflict {
                key_id: key_id.to_string(),
            }),
            Some(_) => Ok(()),
            None => {
                self.keys.insert(key_id.to_string(), AesKey(key));
                Ok(())
            }
        }
    }

    /// Adds a base64 key (strict base64 of exactly 32 bytes).
    pub fn insert_b64(&mut self, key_id: &str, key_b64: &str) -> Result<(), KeyError> {
        let key = decode_key(key_b64, "key ring", "(given directly)")?;
        self.insert(key_id, key)
    }

    /// The key ids, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// Whether `key_id` is present.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    fn get(&self, key_id: &str) -> Option<&AesKey> {
        self.keys.get(key_id)
    }
}

/// Why a payload could not be encrypted (a temporary failure, as in the
/// reference: the message is retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptionError {
    /// The AEAD refused the input (larger than GCM allows).
    #[error("payload encryption failed (payload too large for AES-GCM)")]
    Cipher,
}

/// One encryption policy after inheritance.
struct Policy {
    key_id: String,
    cipher: Arc<Aes256Gcm>,
    envelope_version: u8,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("key_id", &self.key_id)
            .field("envelope_version", &self.envelope_version)
            .finish()
    }
}

/// Encrypts payloads according to the `encryption` section: rules in order,
/// first match wins, unmatched subjects follow `enabled`.
#[derive(Debug)]
pub struct Encryptor {
    rules: Vec<(String, Option<Arc<Policy>>)>,
    default: Option<Arc<Policy>>,
    keys: KeyRing,
}

impl Encryptor {
    /// Builds the encryptor, reading every key from the environment now so a
    /// missing or malformed key stops startup. `None` when no subject can be
    /// encrypted.
    pub fn from_config(config: &EncryptionConfig) -> Result<Option<Self>, KeyError> {
        if !config.any_enabled() {
            config.validate().map_err(KeyError::Config)?;
            return Ok(None);
        }
        let keys = KeyRing::from_config(config)?;
        let mut ciphers: BTreeMap<String, Arc<Aes256Gcm>> = BTreeMap::new();
        let mut policy = |p: crate::config::EffectivePolicy| -> Option<Arc<Policy>> {
            if !p.encrypt {
                return None;
            }
            let key = keys.get(&p.key_id)?;
            let cipher = ciphers
                .entry(p.key_id.clone())
                .or_insert_with(|| Arc::new(Aes256Gcm::new(GenericArray::from_slice(&key.0[..]))))
                .clone();
            Some(Arc::new(Policy {
                key_id: p.key_id,
                cipher,
                envelope_version: p.envelope_version,
            }))
        };
        let default = policy(config.default_policy());
        let rules = (0..config.rules.len())
            .filter_map(|index| {
                let p = config.rule_policy(index)?;
                Some((config.rules[index].subject.clone(), policy(p)))
            })
            .collect();
        Ok(Some(Self {
            rules,
            default,
            keys,
        }))
    }

    /// The keys this encryptor holds (all decryptable key ids).
    pub fn key_ring(&self) -> &KeyRing {
        &self.keys
    }

    fn policy_for(&self, subject: &str) -> Option<&Policy> {
        for (pattern, policy) in &self.rules {
            if subjects::matches_subject(pattern, subject) {
                return policy.as_deref();
            }
        }
        self.default.as_deref()
    }

    /// Whether `subject`'s payloads are encrypted.
    pub fn applies_to(&self, subject: &str) -> bool {
        self.policy_for(subject).is_some()
    }

    /// The encrypted envelope for one payload, or `None` when no policy
    /// encrypts `subject` (the payload is then stored as received). A fresh
    /// random nonce is drawn for every call.
    pub fn encrypt(
        &self,
        subject: &str,
        stream: &str,
        stream_sequence: u64,
        plaintext: &[u8],
    ) -> Result<Option<Vec<u8>>, EncryptionError> {
        let Some(policy) = self.policy_for(subject) else {
            return Ok(None);
        };
        let mut nonce = [0u8; GCM_NONCE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        seal(policy, &nonce, subject, stream, stream_sequence, plaintext).map(Some)
    }
}

/// Encrypts with a given nonce and renders the envelope.
fn seal(
    policy: &Policy,
    nonce: &[u8; GCM_NONCE_BYTES],
    subject: &str,
    stream: &str,
    stream_sequence: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptionError> {
    let aad = match policy.envelope_version {
        2 => v2_associated_data(subject, stream, stream_sequence),
        _ => Vec::new(),
    };
    let ciphertext = policy
        .cipher
        .encrypt(
            GenericArray::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| EncryptionError::Cipher)?;
    let mut inner = json!({
        "algorithm": "aes-256-gcm",
        "ciphertext": B64.encode(&ciphertext),
        "ciphertext_encoding": "base64",
        "key_id": policy.key_id,
        "nonce": B64.encode(nonce),
        "nonce_size_bytes": GCM_NONCE_BYTES,
        "plaintext_size_bytes": plaintext.len(),
        "tag_length": GCM_TAG_BYTES,
    });
    if let Some(map) = inner.as_object_mut() {
        if policy.envelope_version == 2 {
            map.insert("schema".into(), SCHEMA_V2.into());
            map.insert("version".into(), 2.into());
            map.insert("aad_fields".into(), json!(V2_AAD_FIELDS));
        } else {
            map.insert("schema".into(), SCHEMA_V1.into());
            map.insert("version".into(), 1.into());
            map.insert(
                "plaintext_sha256".into(),
                hex::encode(sha2::Sha256::digest(plaintext)).into(),
            );
        }
    }
    // The reference writes the envelope with `ensure_ascii=True`.
    Ok(json::canonical_ascii(&json!({ ENVELOPE_KEY: inner })).into_bytes())
}

/// The associated data of a v2 envelope: the UTF-8 bytes of the compact,
/// key-sorted JSON object `{"schema":"sinkhost.encrypted_payload.v2",
/// "stream":STREAM,"stream_sequence":SEQ,"subject":SUBJECT}` (non-ASCII not
/// escaped).
pub fn v2_associated_data(subject: &str, stream: &str, stream_sequence: u64) -> Vec<u8> {
    crate::security::canonical::to_canonical_bytes(&json!({
        "schema": SCHEMA_V2,
        "stream": stream,
        "stream_sequence": stream_sequence,
        "subject": subject,
    }))
}

/// Why an envelope could not be decrypted. Messages never contain key
/// material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// Not UTF-8 JSON.
    #[error("encrypted payload is not a valid JSON envelope")]
    NotJson,
    /// An object in the envelope repeats a key (ambiguous, refused).
    #[error("encrypted payload is not a valid JSON envelope: duplicate key `{0}`")]
    DuplicateKey(String),
    /// The root is not `{"_nats_sinks_encryption": {...}}`.
    #[error("payload is not an encryption envelope: {0}")]
    NotEnvelope(&'static str),
    /// Schema/version pair not known.
    #[error("encrypted payload schema {schema:?} version {version} is not supported")]
    UnsupportedSchema {
        /// The schema string (or empty).
        schema: String,
        /// The version (or `?`).
        version: String,
    },
    /// Algorithm not known (or not allowed in this version).
    #[error("encrypted payload algorithm {0:?} is not supported")]
    UnsupportedAlgorithm(String),
    /// A field is missing or has the wrong type or value.
    #[error("encrypted payload field `{field}` {problem}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// A base64 field does not decode.
    #[error("encrypted payload field `{0}` is not valid base64")]
    BadBase64(&'static str),
    /// No key with this id.
    #[error("encrypted payload key_id {0:?} is not in the key ring")]
    UnknownKeyId(String),
    /// A v2 envelope needs the message it belongs to.
    #[error(
        "a {SCHEMA_V2} envelope can only be decrypted with its subject, stream and stream sequence"
    )]
    MissingContext,
    /// Wrong key, altered ciphertext, or (v2) another message's context.
    #[error("encrypted payload could not be decrypted (wrong key, altered ciphertext, or not this message's envelope)")]
    AuthenticationFailed,
    /// `plaintext_size_bytes` does not match.
    #[error("encrypted payload plaintext size check failed")]
    SizeMismatch,
    /// `plaintext_sha256` does not match.
    #[error("encrypted payload plaintext digest check failed")]
    DigestMismatch,
}

fn field<'a>(inner: &'a Json, name: &'static str) -> Result<&'a Json, DecryptError> {
    inner.get(name).ok_or(DecryptError::BadField {
        field: name,
        problem: "is missing",
    })
}

fn string_field<'a>(inner: &'a Json, name: &'static str) -> Result<&'a str, DecryptError> {
    field(inner, name)?.as_str().ok_or(DecryptError::BadField {
        field: name,
        problem: "must be a string",
    })
}

fn int_field(inner: &Json, name: &'static str) -> Result<u64, DecryptError> {
    field(inner, name)?.as_u64().ok_or(DecryptError::BadField {
        field: name,
        problem: "must be a non-negative integer",
    })
}

fn b64_field(inner: &Json, name: &'static str) -> Result<Vec<u8>, DecryptError> {
    let text = string_field(inner, name).map_err(|_| DecryptError::BadBase64(name))?;
    B64.decode(text.as_bytes())
        .map_err(|_| DecryptError::BadBase64(name))
}

/// Decrypts an envelope (v1 GCM or CCM from the reference or sinkhost, v2
/// from sinkhost) with the key its `key_id` names.
///
/// `context` is `(subject, stream, stream_sequence)` of the record the
/// envelope was stored with; v2 requires it (and fails if it is not the
/// original message's), v1 ignores it. The plaintext's size and (v1)
/// SHA-256 are checked when the envelope states them.
pub fn decrypt(
    envelope_bytes: &[u8],
    keys: &KeyRing,
    context: Option<(&str, &str, u64)>,
) -> Result<Vec<u8>, DecryptError> {
    let text = std::str::from_utf8(envelope_bytes).map_err(|_| DecryptError::NotJson)?;
    let root = json::parse(text).map_err(|err| match err {
        json::ParseError::DuplicateKey(key) => DecryptError::DuplicateKey(key),
        _ => DecryptError::NotJson,
    })?;
    let Json::Object(members) = &root else {
        return Err(DecryptError::NotEnvelope("the root is not a JSON object"));
    };
    let inner = root.get(ENVELOPE_KEY).ok_or(DecryptError::NotEnvelope(
        "no `_nats_sinks_encryption` object",
    ))?;
    if !matches!(inner, Json::Object(_)) {
        return Err(DecryptError::NotEnvelope(
            "`_nats_sinks_encryption` is not an object",
        ));
    }
    if members.len() != 1 {
        return Err(DecryptError::NotEnvelope(
            "the root holds keys besides `_nats_sinks_encryption`",
        ));
    }

    let schema = inner
        .get("schema")
        .and_then(Json::as_str)
        .unwrap_or_default();
    let version = inner.get("version");
    let envelope_version = match (schema, version.and_then(Json::as_u64)) {
        (SCHEMA_V1, Some(1)) => 1,
        (SCHEMA_V2, Some(2)) => 2,
        _ => {
            return Err(DecryptError::UnsupportedSchema {
                schema: schema.to_string(),
                version: match version {
                    Some(Json::Int(v)) => v.clone(),
                    _ => "?".to_string(),
                },
            })
        }
    };
    if envelope_version == 2 {
        const V2_FIELDS: [&str; 11] = [
            "aad_fields",
            "algorithm",
            "ciphertext",
            "ciphertext_encoding",
            "key_id",
            "nonce",
            "nonce_size_bytes",
            "plaintext_size_bytes",
            "schema",
            "tag_length",
            "version",
        ];
        if let Json::Object(fields) = inner {
            if fields.len() != V2_FIELDS.len()
                || fields.iter().any(|(k, _)| !V2_FIELDS.contains(&k.as_str()))
            {
                return Err(DecryptError::NotEnvelope(
                    "a v2 envelope has exactly its documented fields",
                ));
            }
        }
        let expected = Json::Array(
            V2_AAD_FIELDS
                .iter()
                .map(|f| Json::Str((*f).to_string()))
                .collect(),
        );
        if field(inner, "aad_fields")? != &expected {
            return Err(DecryptError::BadField {
                field: "aad_fields",
                problem: "must be [\"subject\",\"stream\",\"stream_sequence\"]",
            });
        }
    }

    let algorithm = string_field(inner, "algorithm")?;
    let is_ccm = match algorithm {
        "aes-256-gcm" => false,
        "aes-256-ccm" if envelope_version == 1 => true,
        other => return Err(DecryptError::UnsupportedAlgorithm(other.to_string())),
    };
    let key_id = string_field(inner, "key_id")?;
    if key_id.is_empty() {
        return Err(DecryptError::BadField {
            field: "key_id",
            problem: "must not be empty",
        });
    }
    let key = keys
        .get(key_id)
        .ok_or_else(|| DecryptError::UnknownKeyId(key_id.to_string()))?;
    if let Some(encoding) = inner.get("ciphertext_encoding") {
        if encoding.as_str() != Some("base64") {
            return Err(DecryptError::BadField {
                field: "ciphertext_encoding",
                problem: "must be \"base64\"",
            });
        }
    }
    let nonce = b64_field(inner, "nonce")?;
    let ciphertext = b64_field(inner, "ciphertext")?;
    if (inner.get("nonce_size_bytes").is_some() || envelope_version == 2)
        && int_field(inner, "nonce_size_bytes")? != nonce.len() as u64
    {
        return Err(DecryptError::BadField {
            field: "nonce_size_bytes",
            problem: "does not match the nonce",
        });
    }
    let tag_length = match inner.get("tag_length") {
        Some(_) => Some(int_field(inner, "tag_length")?),
        None if is_ccm || envelope_version == 2 => {
            return Err(DecryptError::BadField {
                field: "tag_length",
                problem: "is missing",
            })
        }
        None => None,
    };

    let aad = match envelope_version {
        2 => {
            let (subject, stream, sequence) = context.ok_or(DecryptError::MissingContext)?;
            v2_associated_data(subject, stream, sequence)
        }
        _ => Vec::new(),
    };
    let plaintext = if is_ccm {
        let tag_length = tag_length.unwrap_or_default() as usize;
        ccm_open(&key.0, &nonce, tag_length, &ciphertext)?
    } else {
        if tag_length.is_some_and(|t| t != GCM_TAG_BYTES as u64) {
            return Err(DecryptError::BadField {
                field: "tag_length",
                problem: "must be 16 for aes-256-gcm",
            });
        }
        if envelope_version == 2 && nonce.len() != GCM_NONCE_BYTES {
            return Err(DecryptError::BadField {
                field: "nonce",
                problem: "must be 12 bytes in a v2 envelope",
            });
        }
        gcm_open(&key.0, &nonce, &ciphertext, &aad)?
    };
    let plaintext = Zeroizing::new(plaintext);

    if (inner.get("plaintext_size_bytes").is_some() || envelope_version == 2)
        && int_field(inner, "plaintext_size_bytes")? != plaintext.len() as u64
    {
        return Err(DecryptError::SizeMismatch);
    }
    if let Some(digest) = inner.get("plaintext_sha256") {
        let digest = digest.as_str().ok_or(DecryptError::BadField {
            field: "plaintext_sha256",
            problem: "must be a string",
        })?;
        if digest != hex::encode(sha2::Sha256::digest(&plaintext[..])) {
            return Err(DecryptError::DigestMismatch);
        }
    }
    Ok(plaintext.to_vec())
}

/// AES-256-GCM open with the nonce sizes the reference can write (8..=13
/// bytes; 12 is GCM's native size).
fn gcm_open(
    key: &[u8; 32],
    nonce: &[u8],
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    use aes_gcm::aead::consts::{U10, U11, U12, U13, U8, U9};
    fn open<N: aes_gcm::aead::generic_array::ArrayLength<u8>>(
        key: &[u8; 32],
        nonce: &[u8],
        ciphertext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        let cipher = AesGcm::<aes::Aes256, N>::new(GenericArray::from_slice(key));
        cipher
            .decrypt(
                GenericArray::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| DecryptError::AuthenticationFailed)
    }
    match nonce.len() {
        8 => open::<U8>(key, nonce, ciphertext, aad),
        9 => open::<U9>(key, nonce, ciphertext, aad),
        10 => open::<U10>(key, nonce, ciphertext, aad),
        11 => open::<U11>(key, nonce, ciphertext, aad),
        12 => open::<U12>(key, nonce, ciphertext, aad),
        13 => open::<U13>(key, nonce, ciphertext, aad),
        _ => Err(DecryptError::BadField {
            field: "nonce",
            problem: "must be 8 to 13 bytes for aes-256-gcm",
        }),
    }
}

/// AES-256-CCM open (reference data only): nonce 7..=13 bytes, tag 4..=16
/// even, no associated data.
fn ccm_open(
    key: &[u8; 32],
    nonce: &[u8],
    tag_length: usize,
    ciphertext: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    use ccm::consts::{U10, U11, U12, U13, U14, U16, U4, U6, U7, U8, U9};
    use ccm::{NonceSize, TagSize};
    fn open<M, N>(key: &[u8; 32], nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, DecryptError>
    where
        M: aes_gcm::aead::generic_array::ArrayLength<u8> + TagSize,
        N: aes_gcm::aead::generic_array::ArrayLength<u8> + NonceSize,
    {
        let cipher = ccm::Ccm::<aes::Aes256, M, N>::new(GenericArray::from_slice(key));
        cipher
            .decrypt(GenericArray::from_slice(nonce), ciphertext)
            .map_err(|_| DecryptError::AuthenticationFailed)
    }
    macro_rules! by_nonce {
        ($m:ty) => {
            match nonce.len() {
                7 => open::<$m, U7>(key, nonce, ciphertext),
                8 => open::<$m, U8>(key, nonce, ciphertext),
                9 => open::<$m, U9>(key, nonce, ciphertext),
                10 => open::<$m, U10>(key, nonce, ciphertext),
                11 => open::<$m, U11>(key, nonce, ciphertext),
                12 => open::<$m, U12>(key, nonce, ciphertext),
                13 => open::<$m, U13>(key, nonce, ciphertext),
                _ => Err(DecryptError::BadField {
                    field: "nonce",
                    problem: "must be 7 to 13 bytes for aes-256-ccm",
                }),
            }
        };
    }
    match tag_length {
        4 => by_nonce!(U4),
        6 => by_nonce!(U6),
        8 => by_nonce!(U8),
        10 => by_nonce!(U10),
        12 => by_nonce!(U12),
        14 => by_nonce!(U14),
        16 => by_nonce!(U16),
        _ => Err(DecryptError::BadField {
            field: "tag_length",
            problem: "must be one of 4, 6, 8, 10, 12, 14, 16 for aes-256-ccm",
        }),
    }
}

/// Whether `bytes` look like an encryption envelope (either version),
/// without decrypting.
pub fn is_encrypted_payload(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Ok(root) = json::parse(text) else {
        return false;
    };
    let Some(inner) = root.get(ENVELOPE_KEY) else {
        return false;
    };
    matches!(
        (
            inner.get("schema").and_then(Json::as_str),
            inner.get("version").and_then(Json::as_u64)
        ),
        (Some(SCHEMA_V1), Some(1)) | (Some(SCHEMA_V2), Some(2))
    ) && inner.get("key_id").and_then(Json::as_str).is_some()
        && inner.get("ciphertext").and_then(Json::as_str).is_some()
}

/// Which policy applies to which subjects, for `show-effective-config`:
/// rules in order (with rules that an earlier rule shadows marked), then the
/// fallback for unmatched subjects, and every key id that can be decrypted.
/// Names variables, never reads or shows key material.
pub fn describe_rules(config: &EncryptionConfig) -> Value {
    let describe = |policy: &crate::config::EffectivePolicy, subject: &str| -> Value {
        let mut entry = json!({
            "decided_by": policy.decided_by,
            "subject": subject,
            "action": if policy.encrypt { "encrypt" } else { "store unencrypted" },
        });
        if policy.encrypt {
            if let Some(map) = entry.as_object_mut() {
                map.insert("algorithm".into(), "aes-256-gcm".into());
                map.insert("key_id".into(), policy.key_id.clone().into());
                map.insert(
                    "key_b64_env".into(),
                    policy.key.as_ref().map(|k| k.variable.clone()).into(),
                );
                map.insert(
                    "key_named_at".into(),
                    policy.key.as_ref().map(|k| k.field.clone()).into(),
                );
                map.insert("envelope_version".into(), policy.envelope_version.into());
                map.insert(
                    "schema".into(),
                    if policy.envelope_version == 2 {
                        SCHEMA_V2
                    } else {
                        SCHEMA_V1
                    }
                    .into(),
                );
            }
        }
        entry
    };
    let mut rules = Vec::new();
    for (index, rule) in config.rules.iter().enumerate() {
        let Some(policy) = config.rule_policy(index) else {
            continue;
        };
        let mut entry = describe(&policy, &rule.subject);
        if let Some(earlier) = config.rules[..index]
            .iter()
            .position(|other| subjects::subject_pattern_is_subset(&rule.subject, &other.subject))
        {
            if let Some(map) = entry.as_object_mut() {
                map.insert(
                    "shadowed_by".into(),
                    format!("encryption.rules[{earlier}]").into(),
                );
            }
        }
        rules.push(entry);
    }
    let mut decrypt_key_ids: Vec<String> =
        config.key_sources().into_iter().map(|s| s.key_id).collect();
    decrypt_key_ids.sort();
    json!({
        "encrypts_anything": config.any_enabled(),
        "rules": rules,
        "unmatched": describe(&config.default_policy(), ">"),
        "decrypt_key_ids": decrypt_key_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_B64: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";

    fn vectors() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/nats-sinks-vectors.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn ring(pairs: &[(&str, &str)]) -> KeyRing {
        let mut ring = KeyRing::new();
        for (id, key) in pairs {
            ring.insert_b64(id, key).unwrap();
        }
        ring
    }

    fn key_b64(byte: u8) -> String {
        B64.encode([byte; 32])
    }

    /// Sets variables unique to one test (tests run in parallel).
    fn encryptor(config: &str, vars: &[(&str, String)]) -> Encryptor {
        for (name, value) in vars {
            std::env::set_var(name, value);
        }
        let config: EncryptionConfig = serde_json::from_str(config).unwrap();
        Encryptor::from_config(&config)
            .unwrap()
            .expect("encrypts something")
    }

    #[test]
    fn reference_vectors_decrypt_gcm_and_ccm() {
        let vectors = vectors();
        let cases = vectors["payload_encryption"].as_array().unwrap();
        let mut algorithms = Vec::new();
        for case in cases {
            let keys = ring(&[(
                case["key_id"].as_str().unwrap(),
                case["key_b64"].as_str().unwrap(),
            )]);
            let envelope = case["encrypted_payload_utf8"].as_str().unwrap().as_bytes();
            let expected = B64.decode(case["plaintext_b64"].as_str().unwrap()).unwrap();
            assert_eq!(decrypt(envelope, &keys, None).unwrap(), expected);
            // v1 ignores the context.
            assert_eq!(
                decrypt(envelope, &keys, Some(("x", "Y", 9))).unwrap(),
                expected
            );
            assert!(is_encrypted_payload(envelope));
            algorithms.push(case["algorithm"].as_str().unwrap().to_string());
        }
        assert_eq!(algorithms, ["aes-256-gcm", "aes-256-ccm"]);
    }

    #[test]
    fn v1_output_is_the_reference_bytes() {
        // Same key, nonce and plaintext as the reference's GCM vector: the
        // envelope must be identical byte for byte.
        let vectors = vectors();
        let case = &vectors["payload_encryption"][0];
        let reference = case["encrypted_payload_utf8"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(reference).unwrap();
        let nonce: [u8; 12] = B64
            .decode(parsed[ENVELOPE_KEY]["nonce"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key: [u8; 32] = B64
            .decode(case["key_b64"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let policy = Policy {
            key_id: "enc-1".into(),
            cipher: Arc::new(Aes256Gcm::new(GenericArray::from_slice(&key))),
            envelope_version: 1,
        };
        let plaintext = B64.decode(case["plaintext_b64"].as_str().unwrap()).unwrap();
        let ours = seal(&policy, &nonce, "any.subject", "S", 1, &plaintext).unwrap();
        assert_eq!(std::str::from_utf8(&ours).unwrap(), reference);
    }

    #[test]
    fn v1_round_trip_has_exactly_the_reference_keys() {
        let e = encryptor(
            r#"{"enabled":true,"key_id":"k1","key_b64_env":"SINKHOST_TEST_ENC_V1"}"#,
            &[("SINKHOST_TEST_ENC_V1", key_b64(1))],
        );
        let out = e
            .encrypt("orders.created", "ORDERS", 5, b"{\"id\":1}")
            .unwrap()
            .unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with(
            "{\"_nats_sinks_encryption\":{\"algorithm\":\"aes-256-gcm\",\"ciphertext\":\""
        ));
        let value: Value = serde_json::from_str(text).unwrap();
        let keys: Vec<&str> = value[ENVELOPE_KEY]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "algorithm",
                "ciphertext",
                "ciphertext_encoding",
                "key_id",
                "nonce",
                "nonce_size_bytes",
                "plaintext_sha256",
                "plaintext_size_bytes",
                "schema",
                "tag_length",
                "version"
            ]
        );
        // Compact and sorted: re-rendering canonically gives the same bytes,
        // which is what custody's `compute_sealed` relies on.
        assert_eq!(json::canonical_ascii(&value), text);
        assert_eq!(
            crate::security::custody::payload_hash_input(&out).unwrap(),
            out
        );
        assert_eq!(value[ENVELOPE_KEY]["schema"], SCHEMA_V1);
        assert_eq!(value[ENVELOPE_KEY]["nonce_size_bytes"], 12);
        assert_eq!(
            B64.decode(value[ENVELOPE_KEY]["nonce"].as_str().unwrap())
                .unwrap()
                .len(),
            12
        );
        assert_eq!(decrypt(&out, e.key_ring(), None).unwrap(), b"{\"id\":1}");
        // Fresh nonce each time.
        let again = e
            .encrypt("orders.created", "ORDERS", 5, b"{\"id\":1}")
            .unwrap()
            .unwrap();
        assert_ne!(out, again);
    }

    #[test]
    fn v2_binds_subject_stream_and_sequence() {
        let e = encryptor(
            r#"{"enabled":true,"key_id":"k2","key_b64_env":"SINKHOST_TEST_ENC_V2","envelope_version":2}"#,
            &[("SINKHOST_TEST_ENC_V2", key_b64(2))],
        );
        let out = e
            .encrypt("orders.é", "ORDERS", 42, b"secret")
            .unwrap()
            .unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        let inner = &value[ENVELOPE_KEY];
        assert_eq!(inner["schema"], SCHEMA_V2);
        assert_eq!(inner["version"], 2);
        assert_eq!(
            inner["aad_fields"],
            json!(["subject", "stream", "stream_sequence"])
        );
        assert!(inner.get("plaintext_sha256").is_none());
        let keys = e.key_ring();
        assert_eq!(
            decrypt(&out, keys, Some(("orders.é", "ORDERS", 42))).unwrap(),
            b"secret"
        );
        assert_eq!(decrypt(&out, keys, None), Err(DecryptError::MissingContext));
        for context in [
            ("orders.é", "ORDERS", 43),
            ("orders.x", "ORDERS", 42),
            ("orders.é", "OTHER", 42),
        ] {
            assert_eq!(
                decrypt(&out, keys, Some(context)),
                Err(DecryptError::AuthenticationFailed),
                "{context:?}"
            );
        }
        assert_eq!(
            v2_associated_data("orders.é", "ORDERS", 42),
            "{\"schema\":\"sinkhost.encrypted_payload.v2\",\"stream\":\"ORDERS\",\"stream_sequence\":42,\"subject\":\"orders.é\"}"
                .as_bytes()
        );
        // Extra fields are refused in v2.
        let mut tampered = value.clone();
        tampered[ENVELOPE_KEY]["plaintext_sha256"] = json!("00");
        let bytes = json::canonical_ascii(&tampered).into_bytes();
        assert!(matches!(
            decrypt(&bytes, keys, Some(("orders.é", "ORDERS", 42))),
            Err(DecryptError::NotEnvelope(_))
        ));
    }

    #[test]
    fn rules_first_match_wins_and_unmatched_follow_enabled() {
        let e = encryptor(
            r#"{"enabled":false,"key_id":"top","key_b64_env":"SINKHOST_TEST_ENC_TOP",
                "rules":[{"subject":"public.>","enabled":false},
                         {"subject":"*.secret","key_id":"sec","key_b64_env":"SINKHOST_TEST_ENC_SEC","envelope_version":2},
                         {"subject":"public.secret"},
                         {"subject":"orders.>"}]}"#,
            &[
                ("SINKHOST_TEST_ENC_TOP", key_b64(3)),
                ("SINKHOST_TEST_ENC_SEC", key_b64(4)),
            ],
        );
        assert_eq!(e.encrypt("public.secret", "S", 1, b"x").unwrap(), None);
        assert_eq!(e.encrypt("other.thing", "S", 1, b"x").unwrap(), None);
        let sec: Value =
            serde_json::from_slice(&e.encrypt("ops.secret", "S", 1, b"x").unwrap().unwrap())
                .unwrap();
        assert_eq!(sec[ENVELOPE_KEY]["key_id"], "sec");
        assert_eq!(sec[ENVELOPE_KEY]["version"], 2);
        let orders: Value =
            serde_json::from_slice(&e.encrypt("orders.a.b", "S", 1, b"x").unwrap().unwrap())
                .unwrap();
        assert_eq!(orders[ENVELOPE_KEY]["key_id"], "top");
        assert!(e.applies_to("orders.a") && !e.applies_to("public.a"));
        assert_eq!(e.key_ring().key_ids(), ["sec", "top"]);

        let config: EncryptionConfig = serde_json::from_str(
            r#"{"enabled":false,"key_id":"top","key_b64_env":"SINKHOST_TEST_ENC_TOP",
                "rules":[{"subject":"public.>","enabled":false},{"subject":"public.secret"},{"subject":"orders.>"}]}"#,
        )
        .unwrap();
        let described = describe_rules(&config);
        assert_eq!(described["rules"][0]["action"], "store unencrypted");
        assert_eq!(described["rules"][1]["shadowed_by"], "encryption.rules[0]");
        assert_eq!(
            described["rules"][2]["key_b64_env"],
            "SINKHOST_TEST_ENC_TOP"
        );
        assert_eq!(described["unmatched"]["action"], "store unencrypted");
        assert_eq!(described["decrypt_key_ids"], json!(["top"]));
        assert!(!described.to_string().contains(&key_b64(3)));
    }

    #[test]
    fn rotation_old_key_still_decrypts() {
        // Before: key k1. After rotation: k2 encrypts, k1 kept in decrypt_keys.
        let old = encryptor(
            r#"{"enabled":true,"key_id":"k1","key_b64_env":"SINKHOST_TEST_ROT_K1"}"#,
            &[("SINKHOST_TEST_ROT_K1", key_b64(5))],
        );
        let before = old.encrypt("a", "S", 1, b"old data").unwrap().unwrap();
        let new = encryptor(
            r#"{"enabled":true,"key_id":"k2","key_b64_env":"SINKHOST_TEST_ROT_K2",
                "decrypt_keys":[{"key_id":"k1","key_b64_env":"SINKHOST_TEST_ROT_K1"}]}"#,
            &[("SINKHOST_TEST_ROT_K2", key_b64(6))],
        );
        let after = new.encrypt("a", "S", 2, b"new data").unwrap().unwrap();
        assert!(std::str::from_utf8(&after)
            .unwrap()
            .contains("\"key_id\":\"k2\""));
        assert_eq!(decrypt(&before, new.key_ring(), None).unwrap(), b"old data");
        assert_eq!(decrypt(&after, new.key_ring(), None).unwrap(), b"new data");
        // Without the old key: a clear error naming the key id.
        assert_eq!(
            decrypt(&before, old.key_ring(), None).and(decrypt(&after, old.key_ring(), None)),
            Err(DecryptError::UnknownKeyId("k2".into()))
        );
    }

    #[test]
    fn tampering_and_malformed_envelopes_fail_clearly() {
        let keys = ring(&[("enc-1", KEY_B64)]);
        let vectors = vectors();
        let original = vectors["payload_encryption"][0]["encrypted_payload_utf8"]
            .as_str()
            .unwrap()
            .to_string();
        let value: Value = serde_json::from_str(&original).unwrap();
        let render = |v: &Value| json::canonical_ascii(v).into_bytes();

        // Flip one ciphertext bit.
        let mut ct = B64
            .decode(value[ENVELOPE_KEY]["ciphertext"].as_str().unwrap())
            .unwrap();
        ct[0] ^= 1;
        let mut tampered = value.clone();
        tampered[ENVELOPE_KEY]["ciphertext"] = B64.encode(&ct).into();
        assert_eq!(
            decrypt(&render(&tampered), &keys, None),
            Err(DecryptError::AuthenticationFailed)
        );

        // Wrong key under the right id.
        let wrong = ring(&[("enc-1", &key_b64(9))]);
        assert_eq!(
            decrypt(original.as_bytes(), &wrong, None),
            Err(DecryptError::AuthenticationFailed)
        );

        // Digest and size checks.
        let mut bad = value.clone();
        bad[ENVELOPE_KEY]["plaintext_sha256"] = "00".into();
        assert_eq!(
            decrypt(&render(&bad), &keys, None),
            Err(DecryptError::DigestMismatch)
        );
        let mut bad = value.clone();
        bad[ENVELOPE_KEY]["plaintext_size_bytes"] = 1.into();
        assert_eq!(
            decrypt(&render(&bad), &keys, None),
            Err(DecryptError::SizeMismatch)
        );

        // Malformed base64.
        for (field, text) in [
            ("ciphertext", "not base64!"),
            ("nonce", "CPZsNYCVMEItG/a"),
            ("nonce", "CPZs NYCVMEItG/aa"),
        ] {
            let mut bad = value.clone();
            bad[ENVELOPE_KEY][field] = text.into();
            assert!(
                matches!(
                    decrypt(&render(&bad), &keys, None),
                    Err(DecryptError::BadBase64(_))
                ),
                "{text}"
            );
        }

        // Unknown schema / version / algorithm.
        let mut bad = value.clone();
        bad[ENVELOPE_KEY]["schema"] = "nats_sinks.encrypted_payload.v9".into();
        assert!(matches!(
            decrypt(&render(&bad), &keys, None),
            Err(DecryptError::UnsupportedSchema { .. })
        ));
        let mut bad = value.clone();
        bad[ENVELOPE_KEY]["version"] = 2.into();
        assert!(matches!(
            decrypt(&render(&bad), &keys, None),
            Err(DecryptError::UnsupportedSchema { .. })
        ));
        let mut bad = value.clone();
        bad[ENVELOPE_KEY]["algorithm"] = "chacha20".into();
        assert_eq!(
            decrypt(&render(&bad), &keys, None),
            Err(DecryptError::UnsupportedAlgorithm("chacha20".into()))
        );
        let mut bad = value.clone();
        bad[ENVELOPE_KEY]["nonce_size_bytes"] = 13.into();
        assert!(matches!(
            decrypt(&render(&bad), &keys, None),
            Err(DecryptError::BadField {
                field: "nonce_size_bytes",
                ..
            })
        ));

        // Duplicate keys anywhere in the envelope.
        let dup = original.replacen("{\"algorithm\"", "{\"key_id\":\"other\",\"algorithm\"", 1);
        assert_eq!(
            decrypt(dup.as_bytes(), &keys, None),
            Err(DecryptError::DuplicateKey("key_id".into()))
        );
        let dup_root = format!("{{\"_nats_sinks_encryption\":{{}},{}", &original[1..]);
        assert_eq!(
            decrypt(dup_root.as_bytes(), &keys, None),
            Err(DecryptError::DuplicateKey(ENVELOPE_KEY.into()))
        );

        // Not an envelope.
        assert_eq!(decrypt(b"\xff", &keys, None), Err(DecryptError::NotJson));
        assert_eq!(
            decrypt(b"{\"a\":1}", &keys, None).unwrap_err().to_string(),
            "payload is not an encryption envelope: no `_nats_sinks_encryption` object"
        );
        let mut extra = value.clone();
        extra["other"] = 1.into();
        assert!(matches!(
            decrypt(&render(&extra), &keys, None),
            Err(DecryptError::NotEnvelope(_))
        ));
        assert!(!is_encrypted_payload(b"{\"a\":1}"));
    }

    #[test]
    fn keys_must_be_strict_base64_of_32_bytes() {
        let mut keys = KeyRing::new();
        let err = keys.insert_b64("k", &B64.encode([0u8; 16])).unwrap_err();
        assert!(matches!(err, KeyError::WrongLength { length: 16, .. }));
        assert!(err
            .to_string()
            .contains("decodes to 16 bytes; AES-256 needs exactly 32"));
        assert!(matches!(
            keys.insert_b64("k", "QEFC QQ=="),
            Err(KeyError::NotBase64 { .. })
        ));
        assert!(matches!(
            keys.insert_b64("k", &format!("{KEY_B64}\n")),
            Err(KeyError::NotBase64 { .. })
        ));
        keys.insert_b64("k", KEY_B64).unwrap();
        keys.insert_b64("k", KEY_B64).unwrap();
        assert!(matches!(
            keys.insert_b64("k", &key_b64(1)),
            Err(KeyError::Conflict { .. })
        ));
        assert!(matches!(
            keys.insert_b64("", KEY_B64),
            Err(KeyError::BadKeyId(_))
        ));
        assert!(!format!("{keys:?}").contains("QEFC"));

        // From the environment: errors name field and variable, not the key.
        let config: EncryptionConfig =
            serde_json::from_str(r#"{"enabled":true,"key_b64_env":"SINKHOST_TEST_ENC_SHORT"}"#)
                .unwrap();
        let short = B64.encode([7u8; 31]);
        std::env::set_var("SINKHOST_TEST_ENC_SHORT", &short);
        let err = Encryptor::from_config(&config).unwrap_err().to_string();
        assert_eq!(
            err,
            "environment variable SINKHOST_TEST_ENC_SHORT (named by `encryption.key_b64_env`) decodes to 31 bytes; AES-256 needs exactly 32"
        );
        assert!(!err.contains(&short));
        let config: EncryptionConfig = serde_json::from_str(
            r#"{"enabled":true,"key_b64_env":"SINKHOST_TEST_ENC_UNSET_VARIABLE"}"#,
        )
        .unwrap();
        let err = Encryptor::from_config(&config).unwrap_err().to_string();
        assert_eq!(
            err,
            "`encryption.key_b64_env` names environment variable SINKHOST_TEST_ENC_UNSET_VARIABLE, which is not set"
        );
        // Nothing to encrypt: no keys are read.
        let config: EncryptionConfig =
            serde_json::from_str(r#"{"key_b64_env":"SINKHOST_TEST_ENC_UNSET_VARIABLE"}"#).unwrap();
        assert!(Encryptor::from_config(&config).unwrap().is_none());
    }

    #[test]
    fn gcm_with_other_nonce_sizes_from_the_reference_decrypts() {
        // The reference allows nonce_size_bytes 8..13 with GCM.
        let key = [8u8; 32];
        let nonce = [1u8; 13];
        let cipher =
            AesGcm::<aes::Aes256, aes_gcm::aead::consts::U13>::new(GenericArray::from_slice(&key));
        let ct = cipher
            .encrypt(GenericArray::from_slice(&nonce), &b"hi"[..])
            .unwrap();
        let envelope = json!({ENVELOPE_KEY: {
            "algorithm":"aes-256-gcm","ciphertext":B64.encode(&ct),"ciphertext_encoding":"base64","key_id":"g",
            "nonce":B64.encode(nonce),"nonce_size_bytes":13,"schema":SCHEMA_V1,"tag_length":16,"version":1}});
        let keys = ring(&[("g", &B64.encode(key))]);
        assert_eq!(
            decrypt(&json::canonical_ascii(&envelope).into_bytes(), &keys, None).unwrap(),
            b"hi"
        );
    }

    #[test]
    fn policies_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Encryptor>();
        assert_send_sync::<KeyRing>();
        assert_send_sync::<crate::security::metadata::MetadataPolicy>();
        assert_send_sync::<crate::security::custody::CustodyPolicy>();
    }
}
