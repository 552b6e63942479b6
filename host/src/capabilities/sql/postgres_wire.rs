//! How the host opens PostgreSQL sessions: its own TCP connect, then
//! tokio-postgres over a stream that refuses any backend message larger
//! than the query byte cap ([`Limited`]), plaintext or through rustls.
//!
//! tokio-postgres reads a whole message before handing a row over, so a
//! single row of 500 MB (`SELECT a.v || b.v || ...`) would be buffered
//! whole before [`super::ResultBudget`] could count it; the framing check
//! here stops reading at the message's 5-byte header instead.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use deadpool_postgres::Connect;
use futures::future::BoxFuture;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, NoTls, TlsConnect};
use tokio_postgres::{CancelToken, Client};

/// A backend message's header: a type byte and a 4-byte length that counts
/// itself.
const HEADER_BYTES: usize = 5;

/// What every session of one pool shares: where the server is, its TLS
/// configuration (`None`: plaintext), the largest message allowed, and how
/// many times that cap stopped a session.
#[derive(Clone)]
pub struct Wire {
    host: String,
    port: u16,
    connect_timeout: Duration,
    tls: Option<Arc<ClientConfig>>,
    max_message: Arc<AtomicUsize>,
    oversized: Arc<AtomicU64>,
}

impl Wire {
    /// The wire of a pool.
    pub fn new(
        host: &str,
        port: u16,
        connect_timeout: Duration,
        tls: Option<Arc<ClientConfig>>,
        max_message: usize,
    ) -> Self {
        Self {
            host: host.to_string(),
            port,
            connect_timeout,
            tls,
            max_message: Arc::new(AtomicUsize::new(max_message)),
            oversized: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether sessions are encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Caps a backend message at `bytes` from the next read on.
    pub fn set_max_message(&self, bytes: usize) {
        self.max_message.store(bytes, Ordering::Relaxed);
    }

    /// The largest message a session may receive.
    pub fn max_message(&self) -> usize {
        self.max_message.load(Ordering::Relaxed)
    }

    /// How many sessions the message cap stopped so far.
    pub fn oversized(&self) -> u64 {
        self.oversized.load(Ordering::Relaxed)
    }

    async fn tcp(&self) -> io::Result<TcpStream> {
        let address = (self.host.as_str(), self.port);
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn limited<S>(&self, stream: S) -> Limited<S> {
        Limited {
            inner: stream,
            max: Arc::clone(&self.max_message),
            oversized: Arc::clone(&self.oversized),
            state: Frame::Header {
                got: 0,
                bytes: [0; HEADER_BYTES],
            },
        }
    }

    fn rustls(&self, config: &Arc<ClientConfig>) -> io::Result<LimitedRustls> {
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| io::Error::other("the host is not a valid TLS server name"))?;
        Ok(LimitedRustls {
            config: Arc::clone(config),
            name,
            wire: self.clone(),
        })
    }

    /// Sends a cancel request for the statement `token`'s session runs (a
    /// new connection, the same TLS).
    pub async fn cancel(&self, token: CancelToken) -> Result<(), String> {
        let stream = self.tcp().await.map_err(|err| err.to_string())?;
        match &self.tls {
            Some(config) => {
                let tls = self.rustls(config).map_err(|err| err.to_string())?;
                token.cancel_query_raw(stream, tls).await
            }
            None => token.cancel_query_raw(stream, NoTls).await,
        }
        .map_err(|err| err.to_string())
    }
}

/// deadpool's hook: how a new session is opened.
pub struct WireConnect(pub Wire);

impl Connect for WireConnect {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>> {
        let config = config.clone();
        Box::pin(async move {
            let wire = &self.0;
            let tcp = match wire.tcp().await {
                Ok(tcp) => tcp,
                Err(error) => return Err(connect_error(&config, error).await),
            };
            match &wire.tls {
                Some(tls) => {
                    let tls = match wire.rustls(tls) {
                        Ok(tls) => tls,
                        Err(error) => return Err(connect_error(&config, error).await),
                    };
                    let (client, connection) = config.connect_raw(tcp, tls).await?;
                    Ok((client, spawn_connection(connection)))
                }
                None => {
                    let (client, connection) = config.connect_raw(wire.limited(tcp), NoTls).await?;
                    Ok((client, spawn_connection(connection)))
                }
            }
        })
    }
}

/// `error` as a tokio-postgres error (it has no public constructor): the
/// error of a session over a stream that fails its first write with it.
async fn connect_error(config: &tokio_postgres::Config, error: io::Error) -> tokio_postgres::Error {
    let mut config = config.clone();
    config.ssl_mode(SslMode::Disable);
    match config.connect_raw(Failed(Some(error)), NoTls).await {
        Err(error) => error,
        // Cannot happen: the stream fails every read and write.
        Ok(_) => tokio_postgres::Error::__private_api_timeout(),
    }
}

fn spawn_connection<S, T>(
    connection: tokio_postgres::Connection<S, T>,
) -> tokio::task::JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "PostgreSQL session ended");
        }
    })
}

/// rustls with the message cap on the decrypted side.
pub struct LimitedRustls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    wire: Wire,
}

impl<S> TlsConnect<S> for LimitedRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Limited<tokio_rustls::client::TlsStream<S>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Stream>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(self.wire.limited(stream))
        })
    }
}

/// Where a [`Limited`] stream is in the backend's message framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Reading a header: `got` of its 5 bytes so far.
    Header {
        got: usize,
        bytes: [u8; HEADER_BYTES],
    },
    /// Inside a message body: `remaining` bytes to go.
    Body { remaining: usize },
}

/// A stream from the server that fails the session as soon as a message
/// header announces more than the cap.
pub struct Limited<S> {
    inner: S,
    max: Arc<AtomicUsize>,
    oversized: Arc<AtomicU64>,
    state: Frame,
}

/// Follows the framing over `data`; `Err(length)` at a header announcing a
/// body longer than `max`.
fn follow(state: &mut Frame, mut data: &[u8], max: usize) -> Result<(), usize> {
    while !data.is_empty() {
        match state {
            Frame::Header { got, bytes } => {
                let take = (HEADER_BYTES - *got).min(data.len());
                bytes[*got..*got + take].copy_from_slice(&data[..take]);
                *got += take;
                data = &data[take..];
                if *got == HEADER_BYTES {
                    let length =
                        u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
                    let body = length.saturating_sub(4);
                    if body > max {
                        return Err(body);
                    }
                    *state = if body == 0 {
                        Frame::Header {
                            got: 0,
                            bytes: [0; HEADER_BYTES],
                        }
                    } else {
                        Frame::Body { remaining: body }
                    };
                }
            }
            Frame::Body { remaining } => {
                let take = (*remaining).min(data.len());
                *remaining -= take;
                data = &data[take..];
                if *remaining == 0 {
                    *state = Frame::Header {
                        got: 0,
                        bytes: [0; HEADER_BYTES],
                    };
                }
            }
        }
    }
    Ok(())
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let max = this.max.load(Ordering::Relaxed);
                match follow(&mut this.state, &buf.filled()[before..], max) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(length) => {
                        this.oversized.fetch_add(1, Ordering::Relaxed);
                        Poll::Ready(Err(io::Error::other(format!(
                            "the server sent a {length}-byte message; at most {max} are read"
                        ))))
                    }
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for Limited<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding: the certificate check is what
        // authenticates the server.
        ChannelBinding::none()
    }
}

/// A stream whose first read fails with the connect error.
struct Failed(Option<io::Error>);

impl AsyncRead for Failed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("not connected"))))
    }
}

impl AsyncWrite for Failed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("not connected"))))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: usize) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&((body + 4) as u32).to_be_bytes());
        bytes.extend(vec![b'x'; body]);
        bytes
    }

    #[test]
    fn the_framing_is_followed_across_reads_and_a_big_header_stops_it() {
        let mut stream: Vec<u8> = Vec::new();
        stream.extend(message(b'D', 10));
        stream.extend(message(b'Z', 1));
        stream.extend(message(b'C', 0));
        // Split at every possible point: the state carries across reads.
        for split in 0..stream.len() {
            let mut state = Frame::Header {
                got: 0,
                bytes: [0; HEADER_BYTES],
            };
            follow(&mut state, &stream[..split], 10).expect("first part");
            follow(&mut state, &stream[split..], 10).expect("second part");
            assert!(matches!(state, Frame::Header { got: 0, .. }), "{split}");
        }
        let mut state = Frame::Header {
            got: 0,
            bytes: [0; HEADER_BYTES],
        };
        let big = message(b'D', 11);
        // Refused at the header, before any of the body is read.
        assert_eq!(follow(&mut state, &big[..HEADER_BYTES], 10), Err(11));
    }
}
