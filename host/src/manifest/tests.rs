use serde_json::json;

use super::*;

fn document() -> Value {
    json!({
        "schema": MANIFEST_SCHEMA,
        "name": "file",
        "version": "0.1.0",
        "publisher": "sinkhost project",
        "description": "Writes each message to a file.",
        "license": "Apache-2.0 OR MIT",
        "wit_world": "sinkhost:sink/plugin@0.1.0",
        "grants": [{"kind": "files", "reason": "writes records under the granted directory"}],
        "config_schema": {
            "type": "object",
            "required": ["directory"],
            "additionalProperties": false,
            "properties": {
                "directory": {"type": "string", "minLength": 1},
                "fsync": {"type": "boolean"}
            }
        }
    })
}

fn parse(value: &Value) -> Result<Manifest, ManifestError> {
    Manifest::from_json(value.to_string().as_bytes())
}

fn without(field: &str) -> Value {
    let mut value = document();
    if let Some(object) = value.as_object_mut() {
        object.remove(field);
    }
    value
}

fn with(field: &str, replacement: Value) -> Value {
    let mut value = document();
    value[field] = replacement;
    value
}

#[test]
fn a_complete_manifest_parses_with_defaults() {
    let manifest = parse(&document()).expect("valid");
    assert_eq!(
        manifest.declared(GrantKind::Files).map(|g| g.required),
        Some(true)
    );
    assert_eq!(
        manifest.world_version().expect("world").to_string(),
        "0.1.0"
    );
    assert_eq!(Manifest::from_json(&manifest.to_json()), Ok(manifest));
}

#[test]
fn a_missing_or_unknown_field_is_named() {
    for field in [
        "name",
        "version",
        "publisher",
        "description",
        "license",
        "wit_world",
        "schema",
    ] {
        let error = parse(&without(field)).expect_err(field).to_string();
        assert!(
            error.contains(&format!("missing field `{field}`")),
            "{error}"
        );
    }
    let error = parse(&with("homepage", json!("x")))
        .expect_err("unknown")
        .to_string();
    assert!(error.contains("unknown field `homepage`"), "{error}");
    let mut grant = document();
    grant["grants"][0]["kind"] = json!("sockets");
    let error = parse(&grant).expect_err("kind").to_string();
    assert!(error.contains("grants[0].kind"), "{error}");
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        ("version", json!("1.0"), "version"),
        ("license", json!("MIT OR"), "license"),
        ("license", json!(""), "license"),
        ("wit_world", json!("sinkhost:sink/sink@0.1.0"), "wit_world"),
        ("name", json!("has space"), "name"),
        ("description", json!("two\nlines"), "description"),
        ("schema", json!("sinkhost.plugin-manifest.v2"), "schema"),
        (
            "config_schema",
            json!({"type": "no-such-type"}),
            "config_schema",
        ),
        (
            "config_schema",
            json!({"$schema": "https://example.com/s"}),
            "config_schema",
        ),
        ("config_schema", json!([1]), "config_schema"),
    ];
    for (field, value, named) in cases {
        let error = parse(&with(field, value.clone()))
            .expect_err(field)
            .to_string();
        assert!(
            error.contains(&format!("`{named}`")),
            "{field}={value}: {error}"
        );
    }
    let mut twice = document();
    twice["grants"] = json!([{"kind": "files", "reason": "a"}, {"kind": "files", "reason": "b"}]);
    let error = parse(&twice).expect_err("twice").to_string();
    assert!(error.contains("grants[1].kind"), "{error}");
    let mut empty_reason = document();
    empty_reason["grants"][0]["reason"] = json!(" ");
    let error = parse(&empty_reason).expect_err("reason").to_string();
    assert!(error.contains("grants[0].reason"), "{error}");
}

#[test]
fn spdx_expressions_are_recognised() {
    for good in [
        "MIT",
        "Apache-2.0 OR MIT",
        "(MIT AND BSD-3-Clause) OR GPL-2.0+",
        "GPL-2.0-only WITH Classpath-exception-2.0",
        "LicenseRef-acme",
    ] {
        assert!(check_spdx(good).is_ok(), "{good}");
    }
    for bad in [
        "", "MIT OR", "(MIT", "MIT)", "AND MIT", "MIT MIT", "MIT; rm",
    ] {
        assert!(check_spdx(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_world_must_be_the_real_export_version() {
    let manifest = parse(&document()).expect("valid");
    assert!(manifest.check_world("0.1.0").is_ok());
    let error = manifest
        .check_world("0.1.1")
        .expect_err("other")
        .to_string();
    assert!(error.contains("sinkhost:sink/sink@0.1.1"), "{error}");
}

#[test]
fn imports_need_declared_grants() {
    let manifest = parse(&document()).expect("valid");
    assert!(manifest
        .check_imports([
            "wasi:filesystem/preopens@0.2.6",
            "wasi:clocks/wall-clock@0.2.6"
        ])
        .is_ok());
    let error = manifest
        .check_imports(["wasi:http/outgoing-handler@0.2.6"])
        .expect_err("http")
        .to_string();
    assert!(
        error.contains("wasi:http/outgoing-handler@0.2.6")
            && error.contains("declares no `http` grant"),
        "{error}"
    );
}

#[test]
fn grants_given_and_declared_are_compared() {
    let manifest = parse(&document()).expect("valid");
    let error = manifest
        .check_grants(|_| false)
        .expect_err("required")
        .to_string();
    assert!(
        error.contains("writes records under the granted directory"),
        "{error}"
    );
    assert_eq!(
        manifest.check_grants(|kind| kind == GrantKind::Files),
        Ok(vec![])
    );
    let warnings = manifest.check_grants(|_| true).expect("warnings only");
    assert_eq!(warnings.len(), 2);
    assert!(warnings[0].contains("plugin.grants.http"), "{warnings:?}");
    let mut optional = document();
    optional["grants"][0]["required"] = json!(false);
    assert_eq!(
        parse(&optional).expect("valid").check_grants(|_| false),
        Ok(vec![])
    );
}

#[test]
fn the_sink_section_is_checked_against_the_schema_without_quoting_values() {
    let manifest = parse(&document()).expect("valid");
    assert!(manifest
        .check_sink_config(&json!({"directory": "/out"}))
        .is_ok());
    let error = manifest
        .check_sink_config(&json!({"directory": "/out", "fsync": "s3cr3t"}))
        .expect_err("type")
        .to_string();
    assert!(
        error.contains("/sink/fsync") && !error.contains("s3cr3t"),
        "{error}"
    );
    let error = manifest
        .check_sink_config(&json!({}))
        .expect_err("required")
        .to_string();
    assert!(
        error.contains("/sink: ") && error.contains("directory"),
        "{error}"
    );
    let error = manifest
        .check_sink_config(&json!({"directory": "/out", "extra": 1}))
        .expect_err("extra")
        .to_string();
    assert!(error.contains("extra"), "{error}");
    let no_schema = parse(&without("config_schema")).expect("valid");
    assert!(no_schema.check_sink_config(&json!({"anything": 1})).is_ok());
}

#[test]
fn a_component_without_a_manifest_has_none() {
    let mut bytes = b"\0asm\x0d\x00\x01\x00".to_vec();
    assert_eq!(Manifest::from_component(&bytes), Ok(None));
    bytes = section::replace_custom(
        &bytes,
        MANIFEST_SECTION,
        &parse(&document()).expect("valid").to_json(),
    )
    .expect("embed");
    assert_eq!(
        Manifest::from_component(&bytes)
            .expect("read")
            .map(|m| m.name),
        Some("file".to_string())
    );
    let broken = section::replace_custom(&bytes, MANIFEST_SECTION, b"{").expect("embed");
    assert!(matches!(
        Manifest::from_component(&broken),
        Err(ManifestError::Shape { .. })
    ));
}
