//! Plugins distributed through a standard OCI registry (the reference
//! distribution server, Harbor, GHCR, ...), the way the WebAssembly
//! ecosystem ships components.
//!
//! - [`PluginReference`] parses `oci://host[:port]/repository(:tag|@sha256:hex)`.
//! - [`oci`]: `sinkhost plugin push` and `pull` (artifact layout below).
//! - [`cache`]: the local copy of pulled plugins, keyed by digest, that
//!   `sinkhost run --plugin oci://...` loads from.
//! - [`rollback`]: the highest version run per repository; an older one
//!   runs only when pinned by digest.
//!
//! An artifact is an OCI image manifest whose config has the media type
//! [`WASM_CONFIG_MEDIA_TYPE`] (the CNCF WebAssembly OCI artifact layout), a
//! first layer [`WASM_LAYER_MEDIA_TYPE`] with the component's bytes and a
//! second layer [`SIGNATURE_LAYER_MEDIA_TYPE`] with its signature document
//! (`PLUGIN.sig`, which may carry a certification). See `docs/registry.md`.

use std::fmt;

pub mod cache;
pub mod oci;
pub mod rollback;

/// Media type of the artifact's config (WebAssembly OCI artifact layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the layer that holds the component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Media type of the layer that holds the signature document.
pub const SIGNATURE_LAYER_MEDIA_TYPE: &str = "application/vnd.sinkhost.plugin-signature.v1+json";
/// The scheme every plugin reference starts with.
pub const SCHEME: &str = "oci://";

/// Longest tag the OCI distribution spec allows.
const MAX_TAG_LEN: usize = 128;

/// Why a registry operation failed. Each case says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference is not `oci://host[:port]/repository:tag` or `@sha256:...`.
    #[error("`{reference}` is not a plugin reference: {reason} (expected oci://HOST[:PORT]/REPOSITORY:TAG or oci://HOST[:PORT]/REPOSITORY@sha256:HEX)")]
    BadReference {
        /// The text given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The plugin to push has no signature, or its signature is for other bytes.
    #[error("refusing to push {plugin}: {reason}")]
    NotPushable {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// The registry answered with an error or could not be reached.
    #[error("registry {registry}: {operation} failed: {reason}")]
    Registry {
        /// `host[:port]`.
        registry: String,
        /// What was attempted.
        operation: String,
        /// The client's error.
        reason: String,
    },
    /// The artifact is not a sinkhost plugin artifact.
    #[error("{reference} is not a sinkhost plugin artifact: {reason}")]
    NotAPlugin {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A downloaded (or cached) blob is not the one its descriptor names.
    #[error("{reference}: the {what} blob does not match its digest: the manifest names {expected}, the bytes received hash to {actual} (the registry's copy is corrupted or was tampered with); nothing was written")]
    BlobDigest {
        /// The reference.
        reference: String,
        /// `component` or `signature`.
        what: &'static str,
        /// The descriptor's digest.
        expected: String,
        /// sha256 of the bytes.
        actual: String,
    },
    /// The signature document does not belong to the component, or the
    /// trust policy refused it (the message names the reference).
    #[error("{source}")]
    Untrusted {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: crate::signing::SignatureError,
    },
    /// The registry offers an older version than the host ran before from
    /// the same repository, and the reference does not pin it by digest.
    #[error("refusing {reference}: it is version {offered}, older than version {recorded} this host already ran from {repository} (a registry or tag serving an older release is how a rollback attack looks); to run the older version on purpose, pin it by digest: {pin}")]
    Rollback {
        /// The reference.
        reference: String,
        /// The version offered now.
        offered: String,
        /// The highest version run before.
        recorded: String,
        /// `host[:port]/repository`.
        repository: String,
        /// The same plugin pinned by its manifest digest.
        pin: String,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A parsed `oci://` plugin reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginReference {
    /// `host` or `host:port`.
    pub registry: String,
    /// Repository path, e.g. `sinks/file`.
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// `sha256:<hex>` of the manifest, if given.
    pub digest: Option<String>,
}

impl PluginReference {
    /// Whether `text` is meant as a registry reference (starts with `oci://`).
    pub fn is_reference(text: &str) -> bool {
        text.starts_with(SCHEME)
    }

    /// Parses `oci://host[:port]/repository[:tag][@sha256:hex]`; a tag or a
    /// digest (or both) is required.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let bad = |reason: &str| RegistryError::BadReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it must start with oci://"))?;
        let (registry, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no repository after the registry host"))?;
        check_registry(registry).map_err(|reason| bad(&reason))?;
        let (path, digest) = match path.split_once('@') {
            Some((path, digest)) => {
                check_digest(digest).map_err(|reason| bad(&reason))?;
                (path, Some(digest.to_string()))
            }
            None => (path, None),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => {
                check_tag(tag).map_err(|reason| bad(&reason))?;
                (repository, Some(tag.to_string()))
            }
            _ => (path, None),
        };
        check_repository(repository).map_err(|reason| bad(&reason))?;
        if tag.is_none() && digest.is_none() {
            return Err(bad(
                "no tag or digest: name the version to use (e.g. `:1.0` or `@sha256:...`)",
            ));
        }
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The registry's host without the port.
    pub fn host(&self) -> &str {
        match self.registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => &self.registry,
        }
    }

    /// Whether the registry is on this machine (then it is spoken to over
    /// plain HTTP; every other registry over HTTPS).
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        host == "localhost"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|address| address.is_loopback())
    }

    /// The last path segment of the repository: the file name a pulled
    /// plugin gets (`sinks/file` -> `file`).
    pub fn plugin_name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }

    /// The same reference in the client crate's type.
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
                digest.clone(),
            ),
            (_, Some(digest)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_default(),
            ),
        }
    }
}

impl fmt::Display for PluginReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    if registry.is_empty() {
        return Err("the registry host is empty".into());
    }
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !host.starts_with(['.', '-'])
        && !host.ends_with(['.', '-']);
    if !host_ok {
        return Err(format!("`{host}` is not a registry host name or address"));
    }
    if let Some(port) = port {
        let number = port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| port.parse::<u16>().ok())
            .flatten();
        if !matches!(number, Some(1..)) {
            return Err(format!("`{port}` is not a port (1-65535)"));
        }
    }
    Ok(())
}

/// OCI distribution spec: path components of `[a-z0-9]+` joined by
/// `.`, `_`, `__` or `-` runs, separated by `/`.
pub(crate) fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("the repository is empty".into());
    }
    for component in repository.split('/') {
        let bytes = component.as_bytes();
        let valid = !bytes.is_empty()
            && bytes[0].is_ascii_alphanumeric()
            && bytes[bytes.len() - 1].is_ascii_alphanumeric()
            && bytes.iter().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && !component.contains("..");
        if !valid {
            return Err(format!(
                "repository component `{component}` must be lowercase letters and digits, separated by `.`, `_` or `-`"
            ));
        }
    }
    Ok(())
}

/// OCI distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let bytes = tag.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1 to {MAX_TAG_LEN} letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
        ))
    }
}

/// `sha256:` and 64 lowercase hex digits (the only digest sinkhost accepts).
pub(crate) fn check_digest(digest: &str) -> Result<(), String> {
    let Some(hex) = digest.strip_prefix("sha256:") else {
        return Err(format!("digest `{digest}` must start with sha256:"));
    };
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "digest `{digest}` must be sha256: and 64 lowercase hex digits"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn a_tagged_reference_parses() {
        let reference = PluginReference::parse("oci://127.0.0.1:5000/sinks/file:1.0").expect("ok");
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "sinks/file");
        assert_eq!(reference.tag.as_deref(), Some("1.0"));
        assert_eq!(reference.digest, None);
        assert_eq!(reference.host(), "127.0.0.1");
        assert!(reference.is_loopback());
        assert_eq!(reference.plugin_name(), "file");
        assert_eq!(reference.to_string(), "oci://127.0.0.1:5000/sinks/file:1.0");
    }

    #[test]
    fn a_digest_reference_parses_with_or_without_a_tag() {
        let text = format!("oci://registry.example.com/acme/sinks/file@sha256:{HEX}");
        let reference = PluginReference::parse(&text).expect("ok");
        assert_eq!(reference.registry, "registry.example.com");
        assert_eq!(reference.repository, "acme/sinks/file");
        assert_eq!(reference.tag, None);
        assert_eq!(reference.digest.as_deref(), Some(&*format!("sha256:{HEX}")));
        assert!(!reference.is_loopback());
        assert_eq!(reference.to_string(), text);

        let both = format!("oci://localhost:5000/file:2@sha256:{HEX}");
        let reference = PluginReference::parse(&both).expect("ok");
        assert_eq!(reference.tag.as_deref(), Some("2"));
        assert!(reference.is_loopback());
        assert_eq!(
            reference.to_oci().whole(),
            format!("localhost:5000/file:2@sha256:{HEX}")
        );
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("127.0.0.1:5000/file:1", "must start with oci://"),
            ("oci://127.0.0.1:5000", "no repository"),
            ("oci://127.0.0.1:5000/file", "no tag or digest"),
            ("oci://127.0.0.1:99999/file:1", "is not a port"),
            ("oci://bad_host/file:1", "not a registry host"),
            ("oci:///file:1", "registry host is empty"),
            ("oci://127.0.0.1/Sinks/file:1", "lowercase"),
            ("oci://127.0.0.1/sinks//file:1", "lowercase"),
            ("oci://127.0.0.1/file:-1", "tag `-1`"),
            ("oci://127.0.0.1/file:", "tag ``"),
            ("oci://127.0.0.1/file@md5:abc", "must start with sha256:"),
            ("oci://127.0.0.1/file@sha256:abc", "64 lowercase hex"),
            ("oci://127.0.0.1/../file:1", "repository component `..`"),
        ];
        for (text, expected) in cases {
            let error = PluginReference::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("expected oci://HOST"), "{text}: {error}");
        }
    }

    #[test]
    fn only_oci_paths_are_references() {
        assert!(PluginReference::is_reference("oci://h/r:t"));
        assert!(!PluginReference::is_reference("target/plugins/file.wasm"));
    }
}
