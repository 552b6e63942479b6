//! `sinkhost plugin new --lang LANG NAME`: writes a new sink project from a
//! template (minimal version on the `js` branch: only JavaScript; the lead
//! merges it with the Rust/Python dispatcher).

pub mod js;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// Writes the project of language `lang` named `name` into `dir` (which must
/// be missing or empty); returns the files written.
pub fn generate(lang: &str, name: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("the plugin name must be ASCII letters, digits, '-' or '_' (got {name:?})");
    }
    let files = match lang {
        "js" => js::files(name),
        other => bail!("unknown language {other:?} (this build knows: js)"),
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} is not empty: refusing to write into it", dir.display());
    }
    let mut written = Vec::new();
    for (relative, contents) in files {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
