//! Security helpers on the command line: key generation, producer-side
//! signing (for testing producers), and decrypting stored payloads.
//!
//! Keys are read from environment variables named on the command line, never
//! from arguments (which other users can see in the process list).

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};

use crate::config::{read_secret_env, AuthenticityAlgorithm, SignedField};
use crate::security::authenticity::{
    authenticity_headers, sign_ed25519, sign_hmac, MessageToVerify, SigningKey,
};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `sinkhost keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print new random key material as base64, for env files.
    Generate {
        /// Which kind of key.
        #[arg(long, value_enum)]
        algorithm: KeyAlgorithm,
    },
}

/// Kinds of key `keys generate` makes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyAlgorithm {
    /// 32-byte HMAC-SHA256 secret.
    #[value(name = "hmac-sha256")]
    HmacSha256,
    /// Ed25519 key pair: the 32-byte seed (secret, for the producer) and the
    /// public key (for `public_key_b64` in the verifier's rule).
    #[value(name = "ed25519")]
    Ed25519,
    /// 32-byte AES-256-GCM key.
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
}

/// `sinkhost sign`: the headers a producer must send.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// `hmac-sha256` or `ed25519`.
    #[arg(long, default_value = "hmac-sha256")]
    pub algorithm: String,
    /// Key id the verifier's rule expects.
    #[arg(long)]
    pub key_id: String,
    /// Environment variable holding the base64 HMAC key (hmac-sha256).
    #[arg(long, value_name = "VAR")]
    pub key_b64_env: Option<String>,
    /// Environment variable holding the base64 32-byte Ed25519 seed (ed25519).
    #[arg(long, value_name = "VAR")]
    pub seed_b64_env: Option<String>,
    /// Subject the message is published on.
    #[arg(long)]
    pub subject: String,
    /// Message id (`Nats-Msg-Id`), when the producer sets one.
    #[arg(long)]
    pub message_id: Option<String>,
    /// File holding the exact payload bytes.
    #[arg(long)]
    pub payload_file: PathBuf,
    /// Signed fields (repeat); default `subject` and `message_id`.
    #[arg(long = "signed-field")]
    pub signed_fields: Vec<String>,
    /// Priority, when signed.
    #[arg(long)]
    pub priority: Option<String>,
    /// Classification, when signed.
    #[arg(long)]
    pub classification: Option<String>,
    /// Labels, when signed (repeat).
    #[arg(long = "label")]
    pub labels: Vec<String>,
}

/// Runs `keys generate`.
pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Generate { algorithm } = command;
    let secret: [u8; 32] = rand::random();
    match algorithm {
        KeyAlgorithm::HmacSha256 => println!("key_b64={}", BASE64.encode(secret)),
        KeyAlgorithm::Aes256Gcm => println!("key_b64={}", BASE64.encode(secret)),
        KeyAlgorithm::Ed25519 => {
            let signing = SigningKey::from_bytes(&secret);
            println!("seed_b64={}", BASE64.encode(secret));
            println!(
                "public_key_b64={}",
                BASE64.encode(signing.verifying_key().to_bytes())
            );
        }
    }
    Ok(())
}

/// Runs `sign`: prints `Name: value` header lines.
pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let algorithm = AuthenticityAlgorithm::parse(&args.algorithm).with_context(|| {
        format!(
            "--algorithm `{}`: expected hmac-sha256 or ed25519",
            args.algorithm
        )
    })?;
    let fields: Vec<SignedField> = if args.signed_fields.is_empty() {
        vec![SignedField::Subject, SignedField::MessageId]
    } else {
        args.signed_fields
            .iter()
            .map(|name| {
                SignedField::parse(name)
                    .with_context(|| format!("--signed-field `{name}` is not a signable field"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let payload = std::fs::read(&args.payload_file)
        .with_context(|| format!("cannot read --payload-file {}", args.payload_file.display()))?;
    let mut headers = Vec::new();
    if let Some(id) = &args.message_id {
        headers.push(("Nats-Msg-Id".to_string(), id.clone()));
    }
    let mut message = MessageToVerify::new(&args.subject, &headers, &payload);
    message.priority = args.priority.as_deref();
    message.classification = args.classification.as_deref();
    message.labels = &args.labels;
    let signature = match algorithm {
        AuthenticityAlgorithm::HmacSha256 => {
            let variable = args
                .key_b64_env
                .as_deref()
                .context("hmac-sha256 needs --key-b64-env VAR")?;
            let key = decode_key("--key-b64-env", variable)?;
            sign_hmac(&key, &args.key_id, &fields, &message)?
        }
        AuthenticityAlgorithm::Ed25519 => {
            let variable = args
                .seed_b64_env
                .as_deref()
                .context("ed25519 needs --seed-b64-env VAR")?;
            let seed = decode_key("--seed-b64-env", variable)?;
            let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "--seed-b64-env {variable}: an Ed25519 seed is 32 bytes, got {}",
                    seed.len()
                )
            })?;
            sign_ed25519(
                &SigningKey::from_bytes(&seed),
                &args.key_id,
                &fields,
                &message,
            )
        }
    };
    for (name, value) in
        headers
            .iter()
            .cloned()
            .chain(authenticity_headers(algorithm, &args.key_id, &signature))
    {
        println!("{name}: {value}");
    }
    Ok(())
}

fn decode_key(flag: &str, variable: &str) -> anyhow::Result<Vec<u8>> {
    let text = read_secret_env(flag, variable)?;
    let key = BASE64
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("{flag} {variable}: not valid base64"))?;
    if key.is_empty() {
        bail!("{flag} {variable}: empty key");
    }
    Ok(key)
}

/// `sinkhost decrypt`: prints the plaintext of a stored record's payload or
/// of an encrypted payload envelope.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Key id (as in the envelope's `key_id`); repeat with `--key-b64-env`
    /// for several keys during a rotation.
    #[arg(long = "key-id", required = true)]
    pub key_ids: Vec<String>,
    /// Environment variable holding the base64 AES-256 key, one per `--key-id`.
    #[arg(long = "key-b64-env", value_name = "VAR", required = true)]
    pub key_b64_envs: Vec<String>,
    /// A file record (`nats_sinks.file.message.v1`, its `payload` is the
    /// envelope) or a bare envelope (`{"_nats_sinks_encryption": ...}`).
    pub file: PathBuf,
}

/// Runs `decrypt`.
pub fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    use crate::security::encryption::{decrypt as decrypt_envelope, KeyRing};
    use std::io::Write as _;
    if args.key_ids.len() != args.key_b64_envs.len() {
        bail!("give one --key-b64-env per --key-id");
    }
    let mut ring = KeyRing::new();
    for (key_id, variable) in args.key_ids.iter().zip(&args.key_b64_envs) {
        let text = read_secret_env("--key-b64-env", variable)?;
        ring.insert_b64(key_id, text.trim())
            .with_context(|| format!("--key-b64-env {variable} (key id `{key_id}`)"))?;
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let document: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", args.file.display()))?;
    // A file record carries the envelope in `payload` and the context that a
    // v2 envelope is bound to.
    let (envelope, context) = match document.get("payload") {
        Some(payload) if document.get("schema").is_some() => {
            let context = match (
                document.get("subject").and_then(|v| v.as_str()),
                document.get("stream").and_then(|v| v.as_str()),
                document.get("stream_sequence").and_then(|v| v.as_u64()),
            ) {
                (Some(subject), Some(stream), Some(sequence)) => {
                    Some((subject.to_string(), stream.to_string(), sequence))
                }
                _ => None,
            };
            (serde_json::to_vec(payload)?, context)
        }
        _ => (bytes, None),
    };
    let context_ref = context
        .as_ref()
        .map(|(s, t, n)| (s.as_str(), t.as_str(), *n));
    let plaintext = decrypt_envelope(&envelope, &ring, context_ref)
        .with_context(|| format!("cannot decrypt {}", args.file.display()))?;
    std::io::stdout().write_all(&plaintext)?;
    Ok(())
}
