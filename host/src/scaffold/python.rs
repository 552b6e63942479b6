//! The Python template of `sinkhost plugin new --lang python NAME`: a sink
//! built with componentize-py 0.25.1 on `sdk/python/sinkhost_sdk.py` (copied
//! into the project so it builds on its own), one JSON record file per
//! message, certified by its `certify.sh`.

use std::path::PathBuf;

/// The helper module plugin authors import, shared with `sdk/python`.
const SDK: &str = include_str!("../../../sdk/python/sinkhost_sdk.py");
/// The WIT contract the project builds against.
const WIT: &str = include_str!("../../../wit/sink.wit");

/// Templates: (path in the project, contents with `{{name}}` placeholders).
const TEMPLATES: [(&str, &str); 7] = [
    ("src/app.py", include_str!("templates/python/src/app.py")),
    ("build.sh", include_str!("templates/python/build.sh")),
    ("certify.sh", include_str!("templates/python/certify.sh")),
    (
        "certify.json",
        include_str!("templates/python/certify.json"),
    ),
    (
        "manifest.json",
        include_str!("templates/python/manifest.json"),
    ),
    ("README.md", include_str!("templates/python/README.md")),
    (".gitignore", include_str!("templates/python/gitignore")),
];

/// The files of a new Python sink project named `name`: (relative path,
/// contents).
pub fn files(name: &str) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = TEMPLATES
        .iter()
        .map(|(path, template)| (PathBuf::from(path), template.replace("{{name}}", name)))
        .collect();
    files.push((PathBuf::from("src/sinkhost_sdk.py"), SDK.to_string()));
    files.push((PathBuf::from("wit/sink.wit"), WIT.to_string()));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_replaced_and_the_project_is_complete() {
        let files = files("my-sink");
        for (path, contents) in &files {
            assert!(
                !contents.contains("{{name}}"),
                "{} keeps a placeholder",
                path.display()
            );
        }
        let paths: Vec<String> = files
            .iter()
            .map(|(path, _)| path.display().to_string())
            .collect();
        for expected in [
            "src/app.py",
            "src/sinkhost_sdk.py",
            "wit/sink.wit",
            "build.sh",
            "certify.sh",
            "certify.json",
            "manifest.json",
            "README.md",
        ] {
            assert!(paths.iter().any(|p| p == expected), "{expected} missing");
        }
        let manifest = &files
            .iter()
            .find(|(path, _)| path.as_os_str() == "manifest.json")
            .expect("manifest")
            .1;
        let manifest: serde_json::Value = serde_json::from_str(manifest).expect("manifest is JSON");
        assert_eq!(manifest["name"], "my-sink");
        let certify = &files
            .iter()
            .find(|(path, _)| path.as_os_str() == "certify.json")
            .expect("certify.json")
            .1;
        let certify: serde_json::Value =
            serde_json::from_str(certify).expect("certify.json is JSON");
        assert_eq!(certify["plugin"]["path"], "my-sink.wasm");
    }
}
