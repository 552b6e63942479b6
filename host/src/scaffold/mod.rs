//! `sinkhost plugin new --lang rust|python|js NAME [--dir DIR]`: writes a
//! working sink project (the sink source, the WIT, `build.sh`,
//! `manifest.json`, `certify.json` + `certify.sh`, a README) into an empty
//! directory, so an author goes from nothing to a certified plugin by
//! following `docs/authoring.md`.
//!
//! One module per language exposes `files(name) -> Vec<(PathBuf, String)>`
//! (relative path, contents) from templates under `templates/<lang>/`,
//! pulled in with `include_str!`; [`render`] substitutes `{{name}}`,
//! `{{name_snake}}` and `{{name_camel}}`. This module validates the name,
//! refuses a non-empty directory, adds `wit/sink.wit` and writes the files.

use std::path::{Path, PathBuf};

pub mod js;
pub mod python;
pub mod rust;

/// The WIT contract every project gets as `wit/sink.wit`.
pub const SINK_WIT: &str = include_str!("../../../wit/sink.wit");

/// The languages `sinkhost plugin new` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    /// Rust, on the `sinkhost-sdk` crate (`sdk/rust`).
    Rust,
    /// Python, built with `componentize-py`.
    Python,
    /// JavaScript, built with `componentize-js`.
    Js,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// Language of the project.
    pub language: Language,
    /// Plugin name (also the crate or package name and `<name>.wasm`).
    pub name: String,
    /// Where to write it (default `./<name>`); must be missing or empty.
    pub dir: Option<PathBuf>,
    /// Rust only: the `sinkhost-sdk` crate directory (see [`rust::sdk_dir`]).
    pub sdk_path: Option<PathBuf>,
}

/// Why no project was written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not usable as a crate, package and plugin name.
    #[error("invalid plugin name `{name}`: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target directory has files in it.
    #[error("{0} is not empty: choose a new or empty directory (--dir)")]
    NotEmpty(PathBuf),
    /// The Rust SDK was not found.
    #[error("cannot find the sinkhost-sdk crate: {0}")]
    SdkNotFound(String),
    /// Reading the directory or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Names every template language accepts: 1 to 64 characters, lower-case
/// ASCII letters, digits, `-` and `_`, starting with a letter and not ending
/// with `-` or `_` (valid as a Rust crate, a Python distribution, an npm
/// package and a manifest `name`), and not a Rust keyword or a name the
/// toolchains reserve.
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let invalid = |reason: &str| ScaffoldError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > 64 {
        return Err(invalid("must be 1 to 64 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("must start with a lower-case ASCII letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(invalid(
            "only lower-case ASCII letters, digits, `-` and `_` are allowed",
        ));
    }
    if name.ends_with(['-', '_']) {
        return Err(invalid("must not end with `-` or `_`"));
    }
    if RESERVED.contains(&name_snake(name).as_str()) {
        return Err(invalid("is a Rust keyword or a reserved crate name"));
    }
    Ok(())
}

/// Rust keywords and names cargo or the toolchains reserve.
const RESERVED: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "alloc",
    "core",
    "std",
    "test",
    "proc_macro",
    "build",
    "deps",
    "examples",
    "incremental",
    "sinkhost",
    "sinkhost_sdk",
    "wit_bindgen",
    "serde",
    "serde_json",
    "con",
    "prn",
    "aux",
    "nul",
];

/// `my-sink` -> `my_sink`.
pub fn name_snake(name: &str) -> String {
    name.replace('-', "_")
}

/// `my-sink` -> `MySink`; a result that would clash with a type the
/// templates use (`Config`, `Sink`...) gets `Sink` appended.
pub fn name_camel(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    const TAKEN: &[&str] = &[
        "Config",
        "Sink",
        "Envelope",
        "BatchReport",
        "SinkError",
        "PayloadMode",
        "Path",
        "PathBuf",
        "File",
        "Deserialize",
        "Self",
    ];
    if TAKEN.contains(&camel.as_str()) {
        camel + "Sink"
    } else {
        camel
    }
}

/// Substitutes `{{name}}`, `{{name_snake}}` and `{{name_camel}}` in a
/// template.
pub fn render(template: &str, name: &str) -> String {
    template
        .replace("{{name_snake}}", &name_snake(name))
        .replace("{{name_camel}}", &name_camel(name))
        .replace("{{name}}", name)
}

/// The files of a project (relative path, contents), `wit/sink.wit`
/// included.
pub fn project_files(project: &NewProject) -> Result<Vec<(PathBuf, String)>, ScaffoldError> {
    validate_name(&project.name)?;
    let name = project.name.as_str();
    let mut files = match project.language {
        Language::Rust => rust::files_with_sdk(name, &rust::sdk_dir(project.sdk_path.as_deref())?),
        Language::Python => python::files(name),
        Language::Js => js::files(name),
    };
    let wit = PathBuf::from("wit/sink.wit");
    if !files.iter().any(|(path, _)| *path == wit) {
        files.push((wit, SINK_WIT.to_owned()));
    }
    Ok(files)
}

/// Creates the project; returns the directory written.
pub fn create(project: &NewProject) -> Result<PathBuf, ScaffoldError> {
    let files = project_files(project)?;
    let dir = project
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&project.name));
    ensure_empty(&dir)?;
    for (relative, contents) in &files {
        write_file(&dir.join(relative), contents)?;
    }
    Ok(dir)
}

/// Refuses a directory that exists and is not empty (or is not a directory).
fn ensure_empty(dir: &Path) -> Result<(), ScaffoldError> {
    let io = |source| ScaffoldError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(ScaffoldError::NotEmpty(dir.to_path_buf())),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io(err)),
    }
}

/// Writes one file (creating its directory); `*.sh` files are made
/// executable.
fn write_file(path: &Path, contents: &str) -> Result<(), ScaffoldError> {
    let io = |source| ScaffoldError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)?;
    #[cfg(unix)]
    if path.extension().is_some_and(|ext| ext == "sh") {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
