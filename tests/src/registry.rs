//! A real OCI registry on 127.0.0.1 for the registry tests: the reference
//! distribution server from Debian's `docker-registry` package
//! (`/usr/bin/docker-registry`, installed by tests/setup.sh), with
//! filesystem storage in a temporary directory, so a test can reach into
//! the stored blobs and tamper with them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Where Debian installs the distribution server.
const DEBIAN_BINARY: &str = "/usr/bin/docker-registry";
/// Tries with another port before giving up.
const START_ATTEMPTS: usize = 3;

/// A running `docker-registry serve`, killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
    /// Config, storage and log.
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a fresh registry on a free loopback port and waits until its
    /// API answers.
    pub fn start() -> anyhow::Result<Self> {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir()?;
            let address = format!("127.0.0.1:{}", crate::free_port());
            let child = spawn(dir.path(), &address)?;
            let mut registry = Self { child, address, dir };
            match registry.wait_ready() {
                Ok(()) => return Ok(registry),
                Err(err) => {
                    failures.push(format!("{err:#}\n{}", registry.log()));
                    let _ = registry.child.kill();
                }
            }
        }
        bail!("docker-registry did not start:\n{}", failures.join("\n---\n"))
    }

    /// The storage root (`docker/registry/v2/...` below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file that holds blob `sha256:<hex>` in the registry's storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// `oci://127.0.0.1:<port>/<repository_and_tag>`.
    pub fn reference(&self, repository_and_tag: &str) -> String {
        format!("oci://{}/{repository_and_tag}", self.address)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("docker-registry exited: {status}");
            }
            if crate::http_get_ok(&self.address, "/v2/") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("docker-registry on {} did not answer /v2/", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    std::env::var_os("SINKHOST_TEST_REGISTRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_BINARY))
}

fn spawn(dir: &Path, address: &str) -> anyhow::Result<Child> {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
            dir.join("storage").display()
        ),
    )?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("registry.log"))?;
    Command::new(binary())
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} (install it with `apt-get install docker-registry`)", binary().display()))
}
