//! `sinkhost inspect`: what a component is and what it would need.

use std::path::{Path, PathBuf};

use crate::capabilities::{import_need, ImportNeed};

use super::{cache, check_component_header, engine, PluginLoadError, SINK_EXPORT_PREFIX, SUPPORTED_VERSIONS};

/// One import and what it needs from the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    /// Interface name, e.g. `wasi:filesystem/preopens@0.2.6`.
    pub name: String,
    /// Provided, needs a grant, denied or unsupported.
    pub need: ImportNeed,
}

/// A component's identity, world and requirements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// sha256 of the bytes.
    pub digest: String,
    /// Size in bytes.
    pub size_bytes: usize,
    /// `sinkhost:sink/plugin@<version>` when it is a sink.
    pub world: Option<String>,
    /// Whether this host can run it, and if not why.
    pub runnable: Result<(), String>,
    /// Its imports.
    pub imports: Vec<ImportReport>,
    /// Its exports.
    pub exports: Vec<String>,
    /// Grants the operator must give for it to reach anything.
    pub grants_needed: Vec<String>,
}

/// Reads and compiles (or loads from the cache) a component and reports on it.
pub fn inspect(path: &Path) -> Result<Inspection, PluginLoadError> {
    let bytes = std::fs::read(path).map_err(|source| PluginLoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_component_header(path, &bytes)?;
    let digest = cache::sha256_hex(&bytes);
    let engine = engine::build().map_err(|err| super::link_error(path, err))?;
    let (component, _) = cache::load_or_compile(&engine, &bytes, &digest, cache::default_dir().as_deref())
        .map_err(|err| PluginLoadError::Compile {
            path: path.to_path_buf(),
            message: super::one_line(&format!("{err:#}")),
        })?;
    let component_type = component.component_type();
    let imports: Vec<ImportReport> = component_type
        .imports(&engine)
        .map(|(name, _)| ImportReport {
            name: name.to_string(),
            need: import_need(name),
        })
        .collect();
    let exports: Vec<String> = component_type.exports(&engine).map(|(name, _)| name.to_string()).collect();
    let version = exports.iter().find_map(|name| name.strip_prefix(SINK_EXPORT_PREFIX));
    let mut grants_needed: Vec<String> = imports
        .iter()
        .filter_map(|import| match import.need {
            ImportNeed::Grant(grant) => Some(grant.to_string()),
            _ => None,
        })
        .collect();
    grants_needed.sort();
    grants_needed.dedup();
    let runnable = match (version, super::sink_version(path, &engine, &component), super::check_imports(path, &engine, &component)) {
        (_, Err(err), _) | (_, _, Err(err)) => Err(err.to_string()),
        _ => Ok(()),
    };
    Ok(Inspection {
        path: path.to_path_buf(),
        digest,
        size_bytes: bytes.len(),
        world: version.map(|v| format!("sinkhost:sink/plugin@{v}")),
        runnable,
        imports,
        exports,
        grants_needed,
    })
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "component: {}", self.path.display())?;
        writeln!(f, "sha256:    {}", self.digest)?;
        writeln!(f, "size:      {} bytes", self.size_bytes)?;
        match &self.world {
            Some(world) => writeln!(f, "world:     {world}")?,
            None => writeln!(f, "world:     not a sinkhost sink")?,
        }
        match &self.runnable {
            Ok(()) => writeln!(f, "runnable:  yes (supported WIT versions: {})", SUPPORTED_VERSIONS.join(", "))?,
            Err(why) => writeln!(f, "runnable:  no: {why}")?,
        }
        writeln!(f, "exports:")?;
        for export in &self.exports {
            writeln!(f, "  {export}")?;
        }
        writeln!(f, "imports:")?;
        for import in &self.imports {
            writeln!(f, "  {:<45} {}", import.name, import.need)?;
        }
        if self.grants_needed.is_empty() {
            write!(f, "grants needed: none")
        } else {
            write!(f, "grants needed: {}", self.grants_needed.join(", "))
        }
    }
}
