//! The JavaScript template of `sinkhost plugin new --lang js`: a
//! componentize-js project whose default sink writes one JSON record file per
//! message and passes `sinkhost certify` (see `templates/js/README.md`).

use std::path::PathBuf;

/// The template files, `{{name}}` not yet substituted: (relative path, text).
const TEMPLATES: &[(&str, &str)] = &[
    ("sink.js", include_str!("templates/js/sink.js")),
    ("package.json", include_str!("templates/js/package.json")),
    ("build.sh", include_str!("templates/js/build.sh")),
    ("certify.sh", include_str!("templates/js/certify.sh")),
    ("certify.json", include_str!("templates/js/certify.json")),
    ("manifest.json", include_str!("templates/js/manifest.json")),
    ("README.md", include_str!("templates/js/README.md")),
    (".gitignore", include_str!("templates/js/gitignore")),
    (
        "wit/js-sink.wit",
        include_str!("templates/js/wit/js-sink.wit"),
    ),
    // The sinkhost WIT and the JavaScript helpers, copied from the repository.
    ("wit/sink.wit", include_str!("../../../wit/sink.wit")),
    ("sinkhost.js", include_str!("../../../sdk/js/sinkhost.js")),
    (
        "sinkhost-files.js",
        include_str!("../../../sdk/js/sinkhost-files.js"),
    ),
];

/// The files of a new JavaScript sink project named `name`: (path relative
/// to the project directory, contents), with `{{name}}` substituted.
pub fn files(name: &str) -> Vec<(PathBuf, String)> {
    TEMPLATES
        .iter()
        .map(|(path, text)| (PathBuf::from(path), text.replace("{{name}}", name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_file_is_there_with_the_name_substituted() {
        let files = files("my-sink");
        let path_of = |p: &str| files.iter().find(|(path, _)| path == &PathBuf::from(p));
        for required in [
            "sink.js",
            "wit/sink.wit",
            "build.sh",
            "manifest.json",
            "certify.json",
            "certify.sh",
            "README.md",
            "package.json",
        ] {
            assert!(path_of(required).is_some(), "{required} missing");
        }
        assert!(files.iter().all(|(_, text)| !text.contains("{{name}}")));
        let manifest: serde_json::Value =
            serde_json::from_str(&path_of("manifest.json").expect("manifest").1).expect("json");
        assert_eq!(manifest["name"], "my-sink");
        let build = &path_of("build.sh").expect("build").1;
        assert!(build.contains("--disable http fetch-event"));
        assert!(build.contains("my-sink.wasm"));
    }
}
