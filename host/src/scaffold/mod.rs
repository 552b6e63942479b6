//! `sinkhost plugin new --lang LANG NAME [--dir DIR]`: writes a new sink
//! project from the templates of one language.
//!
//! Minimal version from the Python branch (the Rust SDK branch owns the
//! real one): only the `python` arm.

pub mod python;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// Writes the project of language `lang` named `name` into `dir` (created;
/// refused when it exists and is not empty). Returns the files written.
pub fn generate(lang: &str, name: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let files = match lang {
        "python" => python::files(name),
        other => bail!("unknown language `{other}` (known: python)"),
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let mut written = Vec::new();
    for (relative, contents) in files {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        if path.extension().is_some_and(|ext| ext == "sh") {
            make_executable(&path)?;
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}
