//! The host's screening of every message before a sink sees it:
//!
//! ```text
//! received ─▶ metadata normalisation ─▶ authenticity ─▶ encryption ─▶ custody ─▶ write-batch
//!             (headers, defaults,        (HMAC/Ed25519   (AES-256-GCM  (sha256/
//!              rules; labels policy)      per rule)       per rule)     sha512)
//! ```
//!
//! A message refused by the labels policy or by authenticity never reaches
//! the sink: it is dead-lettered with the reason (then ACKed), or left
//! unACKed when there is no DLQ. Authenticity signs the *normalised*
//! metadata, so normalisation comes first; the labels policy (allowed
//! classifications) is checked while normalising, so a message failing both
//! is reported with the labels reason. Encryption then replaces the payload
//! with the envelope, and custody hashes what the sink will store (the
//! encrypted envelope when a rule encrypts the subject).

use anyhow::Context as _;
use serde_json::Value;

use crate::config::Config;
use crate::envelope::Envelope;

use super::authenticity::{MessageToVerify, Verifier, DLQ_ERROR_TYPE};
use super::custody::CustodyPolicy;
use super::encryption::Encryptor;
use super::metadata::MetadataPolicy;

/// What screening decided for one message.
#[derive(Debug)]
pub enum Screening {
    /// Hand it to the sink (possibly with an encrypted payload and custody).
    Pass(Envelope),
    /// Never hand it to the sink: dead-letter it.
    Reject {
        /// The message, as received.
        envelope: Envelope,
        /// The DLQ record's `error_type`.
        error_type: &'static str,
        /// The DLQ record's `error` (the reference's wording).
        error: String,
    },
    /// The host could not process it now (not the message's fault): retry.
    Retry {
        /// The message, as received.
        envelope: Envelope,
        /// Why, for the log.
        reason: String,
    },
}

/// Metadata, authenticity, encryption and custody, built once at start-up
/// (keys are read from the environment here, and a missing or malformed key
/// stops the start with an error naming the rule and variable).
pub struct SecurityPipeline {
    metadata: MetadataPolicy,
    verifier: Verifier,
    encryptor: Option<Encryptor>,
    custody: Option<CustodyPolicy>,
}

impl SecurityPipeline {
    /// Builds the pipeline of a configuration.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let metadata =
            MetadataPolicy::from_config(&config.message_metadata, &config.security_labels)
                .map_err(|invalid| {
                    anyhow::anyhow!(
                        "invalid config at `{}`: {}",
                        invalid.location,
                        invalid.message
                    )
                })?;
        let verifier =
            Verifier::from_config(&config.message_authenticity).context("message_authenticity")?;
        let encryptor = Encryptor::from_config(&config.encryption).context("encryption")?;
        let custody = CustodyPolicy::from_config(&config.custody);
        Ok(Self {
            metadata,
            verifier,
            encryptor,
            custody,
        })
    }

    /// Screens one message.
    pub fn screen(&self, mut envelope: Envelope) -> Screening {
        match self.metadata.apply(&envelope.subject, &envelope.headers) {
            Ok(metadata) => envelope.metadata = metadata,
            Err(rejection) => {
                let error_type = rejection.error_type();
                return Screening::Reject {
                    envelope,
                    error_type,
                    error: rejection.reason,
                };
            }
        }
        if let Err(failure) = self.verify(&envelope) {
            return Screening::Reject {
                error: failure.reference_error_message(&envelope.subject),
                envelope,
                error_type: DLQ_ERROR_TYPE,
            };
        }
        // The body as received (a reference-counted handle, cheap to keep):
        // what a retry or a dead letter carries if a later stage fails.
        let received_payload = envelope.payload.clone();
        let mut sealed = false;
        if let Some(encryptor) = &self.encryptor {
            match encryptor.encrypt(
                &envelope.subject,
                &envelope.stream,
                envelope.stream_sequence,
                &envelope.payload,
            ) {
                Ok(Some(ciphertext_envelope)) => {
                    envelope.payload = ciphertext_envelope.into();
                    sealed = true;
                }
                Ok(None) => {}
                Err(err) => {
                    return Screening::Retry {
                        envelope,
                        reason: err.to_string(),
                    }
                }
            }
        }
        if let Some(custody) = &self.custody {
            // Hash what the sink stores: the envelope carries no
            // pre-encryption size, so the stored record can only be checked
            // against hashes over the stored (possibly encrypted) payload.
            let computed = if sealed {
                custody.compute_sealed(&envelope, &envelope.payload)
            } else {
                custody.compute(&envelope, &envelope.payload)
            };
            match computed {
                Ok(record) => envelope.custody = Some(record),
                Err(err) => {
                    envelope.payload = received_payload;
                    return Screening::Reject {
                        error_type: err.error_type(),
                        error: err.to_string(),
                        envelope,
                    };
                }
            }
        }
        Screening::Pass(envelope)
    }

    fn verify(&self, envelope: &Envelope) -> Result<(), super::authenticity::AuthenticityFailure> {
        if !self.verifier.is_enabled() {
            return Ok(());
        }
        let parse = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
        };
        let security_labels = parse(&envelope.metadata.security_labels);
        let mission_metadata = parse(&envelope.metadata.mission_metadata);
        let message = MessageToVerify {
            subject: &envelope.subject,
            headers: &envelope.headers,
            payload: &envelope.payload,
            message_id: envelope.message_id.as_deref(),
            priority: envelope.metadata.priority.as_deref(),
            classification: envelope.metadata.classification.as_deref(),
            labels: &envelope.metadata.labels,
            mission_metadata: mission_metadata.as_ref(),
            security_labels: security_labels.as_ref(),
        };
        self.verifier.verify(&message).map(drop)
    }
}
