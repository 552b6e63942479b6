//! `certification`: how `sinkhost certify` checks a sink against its
//! destination. Ignored by `run` and `validate`. The operator (or the
//! certifier) names the commands that look at the destination, because only
//! they know what a durable record is for this sink.

use serde::{Deserialize, Serialize};

use super::{Grants, Invalid};

/// The certification settings of one sink configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificationConfig {
    /// Command (argv) that prints, as its last line, how many distinct
    /// records the destination holds durably (e.g. counts files or rows).
    /// Environment: `SINKHOST_CERTIFY_STREAM`, `SINKHOST_CERTIFY_SUBJECT_PREFIX`.
    pub verifier: Vec<String>,
    /// Command (argv) that prints the stored record of one message, so the
    /// metadata check can look for its id, subject and headers. Environment
    /// adds `SINKHOST_CERTIFY_STREAM_SEQUENCE`, `SINKHOST_CERTIFY_MESSAGE_ID`
    /// and `SINKHOST_CERTIFY_SUBJECT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_lookup: Option<Vec<String>>,
    /// `sink` sections the plugin must refuse in `init` (besides two that
    /// are always tried: a number and a string).
    #[serde(default)]
    pub bad_sink_configs: Vec<serde_json::Value>,
    /// How to make the destination unavailable, for the error
    /// classification check: writes must then fail as transient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<UnavailableScenario>,
    /// A message the sink must refuse as permanent (while storing the
    /// message next to it in the same batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_message: Option<SampleMessage>,
    /// Messages published for the throughput measurement.
    #[serde(default = "default_messages")]
    pub messages: usize,
    /// Slowest acceptable end-to-end rate, messages per second.
    #[serde(default = "default_throughput_floor")]
    pub throughput_floor_msgs_per_s: f64,
    /// Longest the delivery phase may take before it counts as stuck.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

/// A destination that is down. Give `grants`/`sink` to point the plugin at
/// a destination that does not answer, and/or `break_command` and
/// `repair_command` to take the real one down after `init` and bring it
/// back afterwards.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnavailableScenario {
    /// Grants replacing `plugin.grants` for this scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Grants>,
    /// `sink` section replacing the configured one for this scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<serde_json::Value>,
    /// Command (argv) run after `init`, before the write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_command: Option<Vec<String>>,
    /// Command (argv) run after the write, always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_command: Option<Vec<String>>,
}

/// A message to publish: payload as text or base64, and headers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleMessage {
    /// Payload as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<String>,
    /// Payload as standard base64 (instead of `payload_text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_b64: Option<String>,
    /// Extra headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

fn default_messages() -> usize {
    1_000
}
fn default_throughput_floor() -> f64 {
    100.0
}
fn default_timeout_seconds() -> u64 {
    120
}

impl CertificationConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        let command = |argv: &[String], location: &str| {
            if argv.first().is_none_or(|program| program.trim().is_empty()) {
                Err(Invalid::new(
                    location,
                    "must be a command: a non-empty list of program and arguments",
                ))
            } else {
                Ok(())
            }
        };
        command(&self.verifier, "certification.verifier")?;
        if let Some(lookup) = &self.record_lookup {
            command(lookup, "certification.record_lookup")?;
        }
        if let Some(unavailable) = &self.unavailable {
            if let Some(argv) = &unavailable.break_command {
                command(argv, "certification.unavailable.break_command")?;
            }
            if let Some(argv) = &unavailable.repair_command {
                command(argv, "certification.unavailable.repair_command")?;
            }
            if unavailable.grants.is_none()
                && unavailable.sink.is_none()
                && unavailable.break_command.is_none()
            {
                return Err(Invalid::new(
                    "certification.unavailable",
                    "says nothing: give grants or sink pointing at a destination that is down, or a break_command",
                ));
            }
        }
        if let Some(sample) = &self.rejected_message {
            if sample.payload_text.is_some() == sample.payload_b64.is_some() {
                return Err(Invalid::new(
                    "certification.rejected_message",
                    "give exactly one of payload_text and payload_b64",
                ));
            }
        }
        if self.messages == 0 || self.messages > 1_000_000 {
            return Err(Invalid::new(
                "certification.messages",
                "must be between 1 and 1000000",
            ));
        }
        if !self.throughput_floor_msgs_per_s.is_finite() || self.throughput_floor_msgs_per_s < 0.0 {
            return Err(Invalid::new(
                "certification.throughput_floor_msgs_per_s",
                "must be a number ≥ 0",
            ));
        }
        if self.timeout_seconds == 0 {
            return Err(Invalid::new(
                "certification.timeout_seconds",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
