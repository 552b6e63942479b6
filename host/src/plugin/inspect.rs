//! `sinkhost inspect`: what a component is and what it would need.

use std::path::{Path, PathBuf};

use crate::capabilities::{import_need, ImportNeed};
use crate::manifest::Manifest;

use super::{cache, engine, PluginLoadError, SINK_EXPORT_PREFIX, SUPPORTED_VERSIONS};

/// One import and what it needs from the operator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    /// Interface name, e.g. `wasi:filesystem/preopens@0.2.6`.
    pub name: String,
    /// Provided, needs a grant, denied or not provided.
    pub need: ImportNeed,
}

/// A component's identity, world and requirements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// sha256 of the bytes (hex).
    pub digest: String,
    /// Size in bytes.
    pub size_bytes: usize,
    /// `sinkhost:sink/plugin@<version>` when it is a sink.
    pub world: Option<String>,
    /// The WIT version of its `sink` export, when it is a sink.
    pub wit_version: Option<String>,
    /// Whether this host can run it.
    pub runnable: bool,
    /// Why not, when it cannot run.
    pub problem: Option<String>,
    /// Its imports, with what each needs.
    pub imports: Vec<ImportReport>,
    /// Its exports.
    pub exports: Vec<String>,
    /// Grants the operator must give for it to reach anything
    /// (`plugin.grants.<name>`).
    pub grants_needed: Vec<String>,
    /// Its embedded manifest (`sinkhost-manifest` section), if it has a
    /// valid one.
    pub manifest: Option<Manifest>,
    /// Why the manifest is not accepted (invalid, or it disagrees with the
    /// component's WIT version or imports): the host would refuse to load it.
    pub manifest_problem: Option<String>,
}

/// Reads and compiles (or loads from the default cache) a component and
/// reports on it. A component that is not a runnable sink is still
/// described (`runnable: false` and why); a file that is not a component is
/// an error.
pub fn inspect(path: &Path) -> Result<Inspection, PluginLoadError> {
    inspect_with_cache(path, cache::default_dir().as_deref())
}

/// [`inspect`] with an explicit cache directory (`None`: no cache).
pub fn inspect_with_cache(
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<Inspection, PluginLoadError> {
    let bytes = super::read_component(path)?;
    let digest = cache::sha256_hex(&bytes);
    let engine = engine::build().map_err(|err| super::link_error(path, &err))?;
    let (component, _) = super::compile(path, &engine, &bytes, &digest, cache_dir)?;
    let component_type = component.component_type();
    let imports: Vec<ImportReport> = component_type
        .imports(&engine)
        .map(|(name, _)| ImportReport {
            name: name.to_string(),
            need: import_need(name),
        })
        .collect();
    let exports: Vec<String> = component_type
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let wit_version = exports
        .iter()
        .find_map(|name| name.strip_prefix(SINK_EXPORT_PREFIX))
        .map(str::to_string);
    let problem = runnable(path, &engine, &component)
        .err()
        .map(|err| err.to_string());
    let (manifest, manifest_problem) = match Manifest::from_component(&bytes) {
        Ok(manifest) => {
            let disagreement = manifest.as_ref().and_then(|manifest| {
                let world = match &wit_version {
                    Some(version) => manifest.check_world(version),
                    None => Ok(()),
                };
                world
                    .and_then(|()| manifest.check_imports(imports.iter().map(|i| i.name.as_str())))
                    .err()
                    .map(|problem| problem.to_string())
            });
            (manifest, disagreement)
        }
        Err(err) => (None, Some(err.to_string())),
    };
    Ok(Inspection {
        path: path.to_path_buf(),
        digest,
        size_bytes: bytes.len(),
        world: wit_version
            .as_ref()
            .map(|v| format!("sinkhost:sink/plugin@{v}")),
        wit_version,
        runnable: problem.is_none(),
        problem,
        grants_needed: grants_needed(&imports),
        imports,
        exports,
        manifest,
        manifest_problem,
    })
}

/// The load-time checks of [`super::PluginHost::load`]: a sink of a
/// supported version, importing only what the host provides, whose exports
/// match the WIT of its version.
fn runnable(
    path: &Path,
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> Result<(), PluginLoadError> {
    let version = super::sink_version(path, engine, component)?;
    // Which grants it needs is reported, not checked: there is no config here.
    super::check_imports(path, engine, component, None)?;
    super::prepare(engine, component, &version).map_err(|err| super::link_error(path, &err))?;
    Ok(())
}

/// The grants the imports need, sorted, each once.
fn grants_needed(imports: &[ImportReport]) -> Vec<String> {
    let mut grants: Vec<String> = imports
        .iter()
        .filter_map(|import| match import.need {
            ImportNeed::Grant(grant) => Some(grant.to_string()),
            _ => None,
        })
        .collect();
    grants.sort();
    grants.dedup();
    grants
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
        match &self.problem {
            None => writeln!(
                f,
                "runnable:  yes (supported WIT versions: {})",
                SUPPORTED_VERSIONS.join(", ")
            )?,
            Some(why) => writeln!(f, "runnable:  no: {why}")?,
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
            writeln!(f, "grants needed: none")?;
        } else {
            writeln!(f, "grants needed: {}", self.grants_needed.join(", "))?;
        }
        write_manifest(f, self.manifest.as_ref(), self.manifest_problem.as_deref())
    }
}

/// The manifest part of the text report.
fn write_manifest(
    f: &mut std::fmt::Formatter<'_>,
    manifest: Option<&Manifest>,
    problem: Option<&str>,
) -> std::fmt::Result {
    let Some(manifest) = manifest else {
        return match problem {
            Some(problem) => write!(f, "manifest:  invalid: {problem}"),
            None => write!(
                f,
                "manifest:  none (nothing is checked against a declaration; see docs/plugin-manifest.md)"
            ),
        };
    };
    writeln!(
        f,
        "manifest:  {} {} by {}",
        manifest.name, manifest.version, manifest.publisher
    )?;
    writeln!(f, "  description:   {}", manifest.description)?;
    writeln!(f, "  license:       {}", manifest.license)?;
    writeln!(f, "  wit world:     {}", manifest.wit_world)?;
    if manifest.grants.is_empty() {
        writeln!(f, "  grants:        none declared")?;
    } else {
        writeln!(f, "  grants:")?;
        for grant in &manifest.grants {
            let required = if grant.required {
                "required"
            } else {
                "optional"
            };
            writeln!(f, "    {} ({required}): {}", grant.kind, grant.reason)?;
        }
    }
    let schema = if manifest.config_schema.is_some() {
        "present (`sinkhost validate` checks the `sink` section against it)"
    } else {
        "absent"
    };
    write!(f, "  config schema: {schema}")?;
    if let Some(problem) = problem {
        write!(f, "\n  problem:       {problem}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_collected_once() {
        let report = |name: &str| ImportReport {
            name: name.into(),
            need: import_need(name),
        };
        let imports = [
            report("wasi:filesystem/types@0.2.6"),
            report("wasi:filesystem/preopens@0.2.6"),
            report("wasi:clocks/wall-clock@0.2.6"),
            report("wasi:sockets/tcp@0.2.6"),
        ];
        assert_eq!(grants_needed(&imports), vec!["files".to_string()]);
    }
}
