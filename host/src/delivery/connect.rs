//! Connecting to NATS with the operator's authentication and TLS settings.
//! Secrets are read from the environment here and nowhere else.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{read_secret_env, NatsConfig};

/// Builds the client options for a `nats` section.
pub async fn connect_options(nats: &NatsConfig) -> anyhow::Result<async_nats::ConnectOptions> {
    let mut options = async_nats::ConnectOptions::new();
    if let (Some(user), Some(variable)) = (&nats.user, &nats.password_env) {
        let password = read_secret_env("nats.password_env", variable)?;
        options = options.user_and_password(user.clone(), password);
    }
    if let Some(variable) = &nats.token_env {
        options = options.token(read_secret_env("nats.token_env", variable)?);
    }
    if let Some(path) = &nats.creds_file {
        options = options
            .credentials_file(path)
            .await
            .with_context(|| format!("cannot read nats.creds_file {path}"))?;
    }
    if let Some(path) = &nats.nkey_seed_file {
        let seed = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read nats.nkey_seed_file {path}"))?;
        options = options.nkey(seed.trim().to_string());
    }
    if let Some(path) = &nats.tls_ca_file {
        options = options
            .add_root_certificates(PathBuf::from(path))
            .require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&nats.tls_cert_file, &nats.tls_key_file) {
        options = options
            .add_client_certificate(PathBuf::from(cert), PathBuf::from(key))
            .require_tls(true);
    }
    if let Some(name) = &nats.name {
        options = options.name(name.clone());
    } else {
        options = options.name(format!("sinkhost/{}", nats.consumer));
    }
    let max_reconnects = usize::try_from(nats.max_reconnect_attempts).ok();
    let reconnect_wait = Duration::from_secs(nats.reconnect_time_wait_seconds);
    options = options
        .connection_timeout(Duration::from_secs(nats.connect_timeout_seconds))
        .ping_interval(Duration::from_secs(nats.ping_interval_seconds))
        .max_reconnects(max_reconnects)
        .reconnect_delay_callback(move |attempts| {
            // First retry at once, then the configured wait.
            if attempts <= 1 {
                Duration::ZERO
            } else {
                reconnect_wait
            }
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("disconnected from NATS; unACKed messages stay in flight and are ACKed after reconnect or redelivered")
                }
                other => tracing::info!(event = %other, "NATS connection event"),
            }
        });
    Ok(options)
}

/// Connects to the first reachable server of the section.
pub async fn connect(nats: &NatsConfig) -> anyhow::Result<async_nats::Client> {
    let options = connect_options(nats).await?;
    let urls = nats.server_urls();
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .with_context(|| format!("invalid NATS URL `{url}` in nats.url/nats.urls"))
        })
        .collect::<anyhow::Result<_>>()?;
    options
        .connect(addrs)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", urls.join(", ")))
}
