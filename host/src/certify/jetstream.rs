//! The JetStream side of a certification run: a private `nats-server -js`
//! (or the server the certifier names), a stream of its own, published test
//! messages, and envelopes fetched and screened exactly as `run` does.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer::pull, message::Acker, AckKind};
use futures::StreamExt as _;

use crate::delivery::receive;
use crate::envelope::Envelope;
use crate::security::pipeline::{Screening, SecurityPipeline};

/// How long a started server gets to accept JetStream requests.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Payload limit of the private server: the 1 MiB variant plus headers.
const PRIVATE_SERVER_MAX_PAYLOAD: &str = "8MB";
/// How long one fetch of test messages waits for them.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A private `nats-server`, killed on drop.
pub struct PrivateServer {
    child: tokio::process::Child,
    /// `nats://127.0.0.1:PORT`.
    pub url: String,
}

impl PrivateServer {
    /// Starts `nats-server` with JetStream on a free loopback port, its
    /// store and config in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("finding a free port for nats-server")?
            .port();
        let store = dir.join("jetstream");
        let config = dir.join("nats-server.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nmax_payload: {PRIVATE_SERVER_MAX_PAYLOAD}\njetstream {{ store_dir: {:?} }}\n",
                store.display().to_string()
            ),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        let log = std::fs::File::create(dir.join("nats-server.log"))
            .context("creating the nats-server log")?;
        let child = tokio::process::Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("nats-server log")?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start nats-server (install it, e.g. `apt-get install nats-server`, or give --nats-url)")?;
        let server = Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        let mut last_error = String::from("no answer");
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(2), self.probe()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(err)) => last_error = format!("{err:#}"),
                Err(_) => last_error = "no answer within 2 s".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "nats-server at {} did not become ready within {} s: {last_error}",
            self.url,
            SERVER_START_TIMEOUT.as_secs()
        )
    }

    async fn probe(&self) -> anyhow::Result<()> {
        // The server listens only once JetStream is up.
        let client = async_nats::connect(&self.url).await?;
        client.flush().await?;
        Ok(())
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Length of every generated name token, in hex digits (64 random bits:
/// never guessed, never reused).
const TOKEN_HEX: usize = 16;

/// The run's own stream, subjects, consumer and message ids, so nothing an
/// operator already has is touched, and so a plugin cannot tell a
/// certification run from production by its names: every name is derived
/// from a random per-run key (no `certify` prefix, no fixed consumer name,
/// no recognisable subject words), different on every run.
#[derive(Clone)]
pub struct Names {
    /// Random key every name of the run is derived from.
    key: [u8; 32],
    /// Random id of the run (used in payloads and markers).
    pub id: String,
    /// Stream capturing `<prefix>.>`.
    pub stream: String,
    /// Stream capturing the dead-letter subject.
    pub dlq_stream: String,
    /// Dead-letter subject.
    pub dlq_subject: String,
    /// First subject token of every message of the run.
    pub prefix: String,
    /// Durable consumer the host under test uses.
    pub consumer: String,
    /// Encryption key id of the encrypted variant.
    pub key_id: String,
    /// Name of the header that carries the run's marker.
    pub marker_header: String,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("stream", &self.stream)
            .field("prefix", &self.prefix)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}

impl Names {
    /// Fresh names, from a fresh random key.
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let token = |label: &str| derive(&key, label);
        let header = token("marker-header");
        Self {
            id: token("id"),
            stream: token("stream").to_ascii_uppercase(),
            dlq_stream: token("dlq-stream").to_ascii_uppercase(),
            dlq_subject: token("dlq-subject"),
            prefix: token("prefix"),
            consumer: token("consumer"),
            key_id: token("key-id"),
            marker_header: format!("X-{}", &header[..8]),
            key,
        }
    }

    /// `<prefix>.<token>...`: `part`'s dot-separated words each replaced by
    /// a token of the run (wildcards `*` and `>` and empty words kept), so
    /// `subject("run.>")` captures `subject("run.load")`.
    pub fn subject(&self, part: &str) -> String {
        let words: Vec<String> = part
            .split('.')
            .map(|word| match word {
                "" | "*" | ">" => word.to_string(),
                word => derive(&self.key, &format!("subject:{word}"))[..8].to_string(),
            })
            .collect();
        format!("{}.{}", self.prefix, words.join("."))
    }

    /// A message id of the run for the message called `name`.
    pub fn message_id(&self, name: &str) -> String {
        derive(&self.key, &format!("message-id:{name}"))
    }
}

/// Hex of `sha256(key || label)`, [`TOKEN_HEX`] digits.
fn derive(key: &[u8; 32], label: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(key);
    hasher.update(label.as_bytes());
    hex::encode(hasher.finalize())[..TOKEN_HEX].to_string()
}

/// A JetStream connection with the run's streams created.
pub struct Bus {
    /// The JetStream context.
    pub context: jetstream::Context,
    client: async_nats::Client,
    /// The names in use.
    pub names: Names,
}

impl Bus {
    /// Connects and creates the run's two streams.
    pub async fn connect(url: &str, names: Names) -> anyhow::Result<Self> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let context = jetstream::new(client.clone());
        for (stream, subject) in [
            (&names.stream, names.subject(">")),
            (&names.dlq_stream, names.dlq_subject.clone()),
        ] {
            context
                .create_stream(jetstream::stream::Config {
                    name: stream.clone(),
                    subjects: vec![subject],
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating stream {stream}"))?;
        }
        Ok(Self {
            context,
            client,
            names,
        })
    }

    /// Publishes one message; its stream sequence.
    pub async fn publish(
        &self,
        subject: &str,
        headers: &[(String, String)],
        payload: Vec<u8>,
    ) -> anyhow::Result<u64> {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.append(name.as_str(), value.as_str());
        }
        let ack = self
            .context
            .publish_with_headers(subject.to_string(), map, payload.into())
            .await
            .with_context(|| format!("publishing to {subject}"))?
            .await
            .with_context(|| format!("publishing to {subject} (is the message larger than the server's max_payload?)"))?;
        Ok(ack.sequence)
    }

    /// Publishes `count` messages built by `make`, pipelined.
    pub async fn publish_many(
        &self,
        subject: &str,
        count: usize,
        make: impl Fn(usize) -> Vec<u8>,
    ) -> anyhow::Result<()> {
        const WINDOW: usize = 256;
        let mut pending = Vec::with_capacity(WINDOW);
        for index in 0..count {
            pending.push(
                self.context
                    .publish(subject.to_string(), make(index).into())
                    .await?,
            );
            if pending.len() == WINDOW {
                for ack in pending.drain(..) {
                    ack.await?;
                }
            }
        }
        for ack in pending {
            ack.await?;
        }
        Ok(())
    }

    /// An ephemeral pull consumer on one subject of the run.
    pub async fn consumer(&self, subject: &str) -> anyhow::Result<pull::Stream> {
        let stream = self
            .context
            .get_stream(&self.names.stream)
            .await
            .context("opening the run's stream")?;
        let consumer = stream
            .create_consumer(pull::Config {
                filter_subject: subject.to_string(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .context("creating a consumer")?;
        consumer.messages().await.context("pulling messages")
    }

    /// `(num_pending, num_ack_pending, last delivered stream sequence)` of
    /// the durable consumer `name`.
    pub async fn backlog(&self, name: &str) -> anyhow::Result<(u64, u64, u64)> {
        let stream = self.context.get_stream(&self.names.stream).await?;
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_consumer(name)
            .await
            .map_err(|err| anyhow::anyhow!("consumer {name}: {err}"))?;
        let info = consumer
            .info()
            .await
            .map_err(|err| anyhow::anyhow!("consumer info: {err}"))?;
        Ok((
            info.num_pending,
            info.num_ack_pending as u64,
            info.delivered.stream_sequence,
        ))
    }

    /// The subjects (and errors) of every dead-lettered message so far.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut stream = self.context.get_stream(&self.names.dlq_stream).await?;
        let last = stream
            .info()
            .await
            .map_err(|err| anyhow::anyhow!("stream info: {err}"))?
            .state
            .last_sequence;
        let mut records = Vec::new();
        for sequence in 1..=last {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let body: serde_json::Value =
                serde_json::from_slice(&message.payload).unwrap_or_default();
            let subject = body
                .get("subject")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let error = body.get("error").map(|v| v.to_string()).unwrap_or_default();
            records.push((subject, error));
        }
        Ok(records)
    }

    /// Makes sure every buffered ACK reached the server.
    pub async fn flush(&self) -> anyhow::Result<()> {
        self.client.flush().await.context("flushing to NATS")
    }
}

/// Messages fetched for a direct `write-batch`: the envelopes the sink
/// sees, and the handles that settle them (kept in the host).
pub struct Fetched {
    /// What the sink is given.
    pub envelopes: Vec<Envelope>,
    /// How to settle each.
    pub ackers: Vec<Acker>,
}

impl Fetched {
    /// Settles every message the same way.
    pub async fn settle(&self, kind: AckKind) -> anyhow::Result<()> {
        for acker in &self.ackers {
            acker
                .ack_with(kind)
                .await
                .map_err(|err| anyhow::anyhow!("settling a test message: {err}"))?;
        }
        Ok(())
    }
}

/// Takes the next `count` messages from `messages`, screened by `security`
/// as `sinkhost run` screens them.
pub async fn fetch(
    messages: &mut pull::Stream,
    count: usize,
    security: &SecurityPipeline,
) -> anyhow::Result<Fetched> {
    let mut fetched = Fetched {
        envelopes: Vec::with_capacity(count),
        ackers: Vec::with_capacity(count),
    };
    while fetched.envelopes.len() < count {
        let next = tokio::time::timeout(FETCH_TIMEOUT, messages.next())
            .await
            .with_context(|| {
                format!(
                    "only {} of {count} test messages arrived within {} s",
                    fetched.envelopes.len(),
                    FETCH_TIMEOUT.as_secs()
                )
            })?;
        let message = next
            .context("the message stream ended")?
            .map_err(|err| anyhow::anyhow!("pull: {err}"))?;
        let received =
            receive::receive(message, receive::now_ns()).map_err(|err| anyhow::anyhow!("{err}"))?;
        match security.screen(received.envelope) {
            Screening::Pass(envelope) => {
                fetched.envelopes.push(envelope);
                fetched.ackers.push(received.acker);
            }
            Screening::Reject { error, .. } => {
                bail!("the host's own screening refused a test message: {error}")
            }
            Screening::Retry { reason, .. } => {
                bail!("the host could not prepare a test message: {reason}")
            }
        }
    }
    Ok(fetched)
}
