//! The Rust template: a standalone crate on `sinkhost-sdk` (a per-message
//! JSON file sink that passes `sinkhost certify`).
//!
//! The generated `Cargo.toml` depends on the SDK by path. [`sdk_dir`] finds
//! it: `--sdk-path`, else the environment variable `SINKHOST_SDK_DIR`, else
//! `sdk/rust` of the sinkhost checkout this binary was built from (when it
//! still exists).

use std::path::{Path, PathBuf};

use super::{render, ScaffoldError};

/// Environment variable naming the `sinkhost-sdk` crate directory.
pub const SDK_DIR_ENV: &str = "SINKHOST_SDK_DIR";

/// `sdk/rust` of the checkout this binary was built from.
const BUILT_SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/rust");

const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("templates/rust/src/lib.rs")),
    ("build.sh", include_str!("templates/rust/build.sh")),
    (
        "manifest.json",
        include_str!("templates/rust/manifest.json"),
    ),
    ("certify.json", include_str!("templates/rust/certify.json")),
    ("certify.sh", include_str!("templates/rust/certify.sh")),
    ("README.md", include_str!("templates/rust/README.md")),
    (".gitignore", include_str!("templates/rust/gitignore")),
];

/// The project's files, depending on the SDK found by [`sdk_dir`] without
/// an explicit path (the build-time checkout when nothing else is set).
pub fn files(name: &str) -> Vec<(PathBuf, String)> {
    let sdk = sdk_dir(None).unwrap_or_else(|_| PathBuf::from(BUILT_SDK_DIR));
    files_with_sdk(name, &sdk)
}

/// The project's files, depending on the SDK at `sdk`.
pub fn files_with_sdk(name: &str, sdk: &Path) -> Vec<(PathBuf, String)> {
    let sdk = toml_string_body(&sdk.display().to_string());
    TEMPLATES
        .iter()
        .map(|(path, template)| {
            let contents = render(template, name).replace("{{sdk_path}}", &sdk);
            (PathBuf::from(path), contents)
        })
        .collect()
}

/// The `sinkhost-sdk` crate directory: `explicit` (`--sdk-path`), else
/// `$SINKHOST_SDK_DIR`, else the build-time checkout's `sdk/rust`. The
/// directory must hold the SDK's `Cargo.toml`; the path is made absolute.
pub fn sdk_dir(explicit: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    let from_env = std::env::var_os(SDK_DIR_ENV).map(PathBuf::from);
    let (candidate, origin) = match (explicit, from_env) {
        (Some(path), _) => (path.to_path_buf(), "--sdk-path"),
        (None, Some(path)) => (path, SDK_DIR_ENV),
        (None, None) => (
            PathBuf::from(BUILT_SDK_DIR),
            "the sinkhost checkout this binary was built from",
        ),
    };
    let manifest = candidate.join("Cargo.toml");
    let is_sdk = std::fs::read_to_string(&manifest)
        .is_ok_and(|text| text.contains("name = \"sinkhost-sdk\""));
    if !is_sdk {
        return Err(ScaffoldError::SdkNotFound(format!(
            "{} (from {origin}) is not the sdk/rust directory of a sinkhost checkout; pass --sdk-path or set {SDK_DIR_ENV}",
            candidate.display()
        )));
    }
    std::fs::canonicalize(&candidate).map_err(|source| ScaffoldError::Io {
        path: candidate,
        source,
    })
}

/// Escapes text for the inside of a TOML basic string.
fn toml_string_body(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
