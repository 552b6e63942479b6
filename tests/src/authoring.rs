//! What the authoring tests (`tests/e2e/authoring_{rust,python,js}.rs`)
//! share: generating a project with `sinkhost plugin new`, running its
//! scripts, reading the host's `plugin loaded` line. Certification reports:
//! [`crate::certification`].

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{sinkhost, sinkhost_bin, sinkhost_with_env};

/// `sinkhost plugin new --lang LANG --dir PROJECT [EXTRA...] NAME` must
/// succeed and write every one of `files`; a second run into the now
/// non-empty directory must be refused, saying so.
pub fn new_project(lang: &str, project: &Path, name: &str, extra: &[&str], files: &[&str]) {
    let dir = project.to_str().expect("utf-8 path");
    let mut args = vec!["plugin", "new", "--lang", lang, "--dir", dir];
    args.extend_from_slice(extra);
    args.push(name);
    let (code, stdout, stderr) = sinkhost(&args);
    assert_eq!(code, 0, "plugin new --lang {lang}: {stdout}{stderr}");
    for file in files {
        assert!(project.join(file).is_file(), "{file} not generated");
    }
    let (code, _, stderr) = sinkhost(&args);
    assert_ne!(code, 0, "plugin new wrote into a non-empty directory");
    assert!(stderr.contains("not empty"), "{stderr}");
}

/// Runs `bash SCRIPT` inside `project` with `SINKHOST` pointing at the
/// binary under test plus `env`; (exit code, stdout + stderr).
pub fn run_project_script(project: &Path, script: &str, env: &[(&str, &Path)]) -> (i32, String) {
    let output = Command::new("bash")
        .arg(script)
        .current_dir(project)
        .env("SINKHOST", sinkhost_bin())
        .envs(env.iter().map(|(name, value)| (*name, *value)))
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// What the host's `plugin loaded` log line says about a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLoad {
    /// `cache=`: `Hit`, `Miss` or `Unavailable` (empty when absent).
    pub cache: String,
    /// `load_ms=`, when present.
    pub load_ms: Option<u64>,
}

/// `sinkhost validate CONFIG` with the info log: (exit code, the plugin's
/// load line, all output).
pub fn validate_with_load(config: &Path) -> (i32, PluginLoad, String) {
    let (code, stdout, stderr) = sinkhost_with_env(
        &["validate", config.to_str().expect("utf-8 path")],
        &[("RUST_LOG", "info")],
    );
    let output = format!("{stdout}{stderr}");
    (code, plugin_load(&output), output)
}

/// Parses the `plugin loaded plugin=...` line of a host's output.
pub fn plugin_load(output: &str) -> PluginLoad {
    let line = output
        .lines()
        .find(|line| line.contains("plugin loaded plugin="))
        .unwrap_or("");
    let field = |name: &str| {
        line.split(&format!("{name}="))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    };
    PluginLoad {
        cache: field("cache"),
        load_ms: field("load_ms")
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse().ok()),
    }
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_line_is_parsed() {
        let line = "INFO plugin loaded plugin=/x.wasm cache=Hit load_ms=84 compile_ms=0";
        assert_eq!(
            plugin_load(line),
            PluginLoad {
                cache: "Hit".into(),
                load_ms: Some(84)
            }
        );
        assert_eq!(plugin_load("nothing").load_ms, None);
    }
}
