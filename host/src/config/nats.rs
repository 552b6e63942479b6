//! The `nats` section: where to connect and what to consume.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// Connection and consumer identity, as in the reference's `nats` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL, used when `urls` is empty.
    #[serde(default = "default_url")]
    pub url: String,
    /// Several server URLs (a cluster); take precedence over `url`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// JetStream stream to consume from.
    pub stream: String,
    /// Durable consumer name.
    pub consumer: String,
    /// Subject filter of the consumer (NATS wildcards allowed).
    pub subject: String,
    /// Must stay `true`: sinkhost only runs durable consumers, so that a
    /// restart resumes where the last ACK left off.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Client connection name shown by the server.
    #[serde(default)]
    pub name: Option<String>,
    /// User name for user/password authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Environment variable holding a token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// NATS credentials file (JWT + NKey seed).
    #[serde(default)]
    pub creds_file: Option<String>,
    /// File holding an NKey seed.
    #[serde(default)]
    pub nkey_seed_file: Option<String>,
    /// CA certificate file for TLS.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// Client certificate file for mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<String>,
    /// Client key file for mutual TLS.
    #[serde(default)]
    pub tls_key_file: Option<String>,
    /// Seconds to wait for the first connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// Seconds between reconnect attempts.
    #[serde(default = "default_reconnect_wait")]
    pub reconnect_time_wait_seconds: u64,
    /// Reconnect attempts before giving up; -1 = forever.
    #[serde(default = "default_max_reconnects")]
    pub max_reconnect_attempts: i64,
    /// Seconds between client pings.
    #[serde(default = "default_ping_interval")]
    pub ping_interval_seconds: u64,
    /// How long a graceful stop may take to finish the batches in flight.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_seconds: u64,
}

fn default_url() -> String {
    "nats://localhost:4222".to_string()
}
fn yes() -> bool {
    true
}
fn default_connect_timeout() -> u64 {
    2
}
fn default_reconnect_wait() -> u64 {
    2
}
fn default_max_reconnects() -> i64 {
    60
}
fn default_ping_interval() -> u64 {
    120
}
fn default_drain_timeout() -> u64 {
    30
}

impl NatsConfig {
    /// The server URLs to try, in order.
    pub fn server_urls(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        for (field, value) in [
            ("nats.stream", &self.stream),
            ("nats.consumer", &self.consumer),
            ("nats.subject", &self.subject),
        ] {
            if value.trim().is_empty() {
                return Err(Invalid::new(field, "must not be empty"));
            }
        }
        if self
            .stream
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(Invalid::new(
                "nats.stream",
                "a stream name may not contain whitespace, '.', '*', '>', '/' or '\\'",
            ));
        }
        if self
            .consumer
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
        {
            return Err(Invalid::new(
                "nats.consumer",
                "a consumer name may not contain whitespace, '.', '*', '>', '/' or '\\'",
            ));
        }
        if !self.durable {
            return Err(Invalid::new(
                "nats.durable",
                "sinkhost only runs durable consumers (commit first, ACK last needs a durable position)",
            ));
        }
        if self.connect_timeout_seconds == 0 {
            return Err(Invalid::new(
                "nats.connect_timeout_seconds",
                "must be at least 1",
            ));
        }
        if self.ping_interval_seconds == 0 {
            // The client's ping timer panics on a zero period.
            return Err(Invalid::new(
                "nats.ping_interval_seconds",
                "must be at least 1",
            ));
        }
        if self.max_reconnect_attempts < -1 {
            return Err(Invalid::new(
                "nats.max_reconnect_attempts",
                "must be -1 (forever) or a positive count",
            ));
        }
        if self.password_env.is_some() && self.user.is_none() {
            return Err(Invalid::new("nats.password_env", "needs `nats.user`"));
        }
        let methods = [
            self.password_env.is_some(),
            self.token_env.is_some(),
            self.creds_file.is_some(),
            self.nkey_seed_file.is_some(),
        ];
        if methods.iter().filter(|set| **set).count() > 1 {
            return Err(Invalid::new(
                "nats",
                "choose one authentication method: password_env, token_env, creds_file or nkey_seed_file",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(Invalid::new(
                "nats.tls_cert_file",
                "tls_cert_file and tls_key_file go together",
            ));
        }
        Ok(())
    }
}
