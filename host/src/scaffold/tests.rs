use super::*;

fn rust_project(dir: &Path) -> NewProject {
    NewProject {
        language: Language::Rust,
        name: "my-sink".into(),
        dir: Some(dir.to_path_buf()),
        sdk_path: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../sdk/rust"
        ))),
    }
}

#[test]
fn rust_project_has_every_file() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("my-sink");
    create(&rust_project(&dir)).expect("create");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "build.sh",
        "manifest.json",
        "certify.json",
        "certify.sh",
        "README.md",
        ".gitignore",
        "wit/sink.wit",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    assert!(cargo.contains("name = \"my-sink\""));
    assert!(cargo.contains("/sdk/rust\" }"), "{cargo}");
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
    assert!(lib.contains("export_sink!(MySink)"));
    assert!(!lib.contains("{{"));
    let build = std::fs::read_to_string(dir.join("build.sh")).expect("build.sh");
    assert!(build.contains("release/my_sink.wasm"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("read"))
            .expect("manifest is JSON");
    assert_eq!(manifest["name"], "my-sink");
    let certify: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("certify.json")).expect("read"))
            .expect("certify.json is JSON");
    assert_eq!(certify["plugin"]["path"], "my-sink.wasm");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("certify.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }
}

#[test]
fn manifest_template_is_a_valid_manifest() {
    let files = rust::files_with_sdk("my-sink", Path::new("/sdk"));
    let (_, text) = files
        .iter()
        .find(|(path, _)| path == Path::new("manifest.json"))
        .expect("manifest.json");
    let manifest = crate::manifest::Manifest::from_json(text.as_bytes()).expect("valid manifest");
    assert_eq!(manifest.name, "my-sink");
}

#[test]
fn refuses_a_non_empty_directory() {
    let temp = tempfile::tempdir().expect("tempdir");
    std::fs::write(temp.path().join("keep.txt"), "x").expect("write");
    let err = create(&rust_project(temp.path())).unwrap_err();
    assert!(matches!(err, ScaffoldError::NotEmpty(_)), "{err}");
    assert_eq!(std::fs::read_dir(temp.path()).expect("list").count(), 1);
}

#[test]
fn accepts_an_existing_empty_directory() {
    let temp = tempfile::tempdir().expect("tempdir");
    create(&rust_project(temp.path())).expect("create");
    assert!(temp.path().join("Cargo.toml").is_file());
}

#[test]
fn refuses_invalid_names() {
    for name in [
        "",
        "My-Sink",
        "1sink",
        "-sink",
        "sink-",
        "my sink",
        "my.sink",
        "my/sink",
        "fn",
        "test",
        "std",
        "sinkhost-sdk",
        "é",
        &"a".repeat(65),
    ] {
        assert!(validate_name(name).is_err(), "{name:?} accepted");
    }
    for name in ["a", "my-sink", "my_sink2", "orders-to-disk"] {
        validate_name(name).unwrap_or_else(|err| panic!("{name}: {err}"));
    }
}

#[test]
fn invalid_name_writes_nothing() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("x");
    let mut project = rust_project(&dir);
    project.name = "Bad Name".into();
    assert!(matches!(
        create(&project),
        Err(ScaffoldError::InvalidName { .. })
    ));
    assert!(!dir.exists());
}

#[test]
fn camel_case_avoids_template_types() {
    assert_eq!(name_camel("my-sink"), "MySink");
    assert_eq!(name_camel("orders_to_disk"), "OrdersToDisk");
    assert_eq!(name_camel("config"), "ConfigSink");
    assert_eq!(name_camel("sink"), "SinkSink");
}

#[test]
fn sdk_dir_must_hold_the_sdk() {
    let temp = tempfile::tempdir().expect("tempdir");
    let err = rust::sdk_dir(Some(temp.path())).unwrap_err();
    assert!(err.to_string().contains("--sdk-path"), "{err}");
    let sdk = rust::sdk_dir(Some(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sdk/rust"
    ))))
    .expect("the repository's SDK");
    assert!(sdk.is_absolute());
}

#[test]
fn sdk_path_is_escaped_for_toml() {
    let files = rust::files_with_sdk("a", Path::new("C:\\sdk \"x\""));
    let cargo = &files
        .iter()
        .find(|(p, _)| p == Path::new("Cargo.toml"))
        .expect("cargo")
        .1;
    assert!(cargo.contains(r#"path = "C:\\sdk \"x\"""#), "{cargo}");
}
