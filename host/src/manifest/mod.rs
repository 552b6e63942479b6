//! The plugin manifest: what a plugin says it is and what it needs, stored
//! inside the component in a top-level custom section named
//! [`MANIFEST_SECTION`] (see docs/plugin-manifest.md).
//!
//! The host reads it from the very bytes it compiles and compares it with
//! the component's real imports and the operator's grants:
//! - an import that needs a grant the manifest does not declare: refused;
//! - a grant the manifest declares as `required` and the operator did not
//!   give: refused, quoting the manifest's reason;
//! - a grant the operator gives and the manifest does not declare: a
//!   warning (the plugin says it does not need it);
//! - a `wit_world` other than the component's real sink export: refused;
//! - a `sink` section that does not match `config_schema`: refused, naming
//!   the JSON pointer of each problem.
//!
//! A plugin without a manifest still loads, with a warning.

pub mod section;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::capabilities::{import_need, ImportNeed};

/// Schema name of a manifest document.
pub const MANIFEST_SCHEMA: &str = "sinkhost.plugin-manifest.v1";
/// Name of the custom section that holds the manifest.
pub const MANIFEST_SECTION: &str = "sinkhost-manifest";
/// Name of the custom section that holds an embedded signature document.
pub const SIGNATURE_SECTION: &str = "sinkhost-signature";
/// The WIT package of every world a sink may target (`wit/sink.wit`).
pub const WIT_PACKAGE: &str = "sinkhost:sink";
/// The worlds a sink may declare in `wit_world` (`sinkhost:sink/<world>@<version>`).
pub const SINK_WORLDS: &[&str] = &["plugin", "sql-plugin"];
/// The largest manifest accepted (it is metadata, not data).
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;
/// How many schema violations of the `sink` section are reported at most.
const MAX_REPORTED_VIOLATIONS: usize = 10;
/// `$schema` values accepted in `config_schema` (absent means 2020-12).
const ACCEPTED_DRAFTS: &[&str] = &[
    "https://json-schema.org/draft/2020-12/schema",
    "http://json-schema.org/draft-07/schema#",
    "http://json-schema.org/draft-07/schema",
];

/// What a plugin may ask the operator to grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantKind {
    /// Directories (`plugin.grants.files`).
    Files,
    /// Outgoing HTTP origins (`plugin.grants.http`).
    Http,
    /// Database connections (`plugin.grants.sql`).
    Sql,
}

impl GrantKind {
    /// Every kind, in `plugin.grants` order.
    pub const ALL: [GrantKind; 3] = [GrantKind::Files, GrantKind::Http, GrantKind::Sql];

    /// Its name in `plugin.grants` and in [`ImportNeed::Grant`].
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Files => "files",
            GrantKind::Http => "http",
            GrantKind::Sql => "sql",
        }
    }

    /// The kind called `name` (`files`, `http`, `sql`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for GrantKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn yes() -> bool {
    true
}

/// One grant the plugin asks for, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredGrant {
    /// Which grant.
    pub kind: GrantKind,
    /// Why the plugin needs it, for the operator (e.g. `writes records
    /// under the granted directory`).
    pub reason: String,
    /// Whether the plugin cannot work without it (default `true`).
    #[serde(default = "yes")]
    pub required: bool,
}

/// A plugin manifest ([`MANIFEST_SCHEMA`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA`].
    pub schema: String,
    /// The plugin's name, e.g. `file`.
    pub name: String,
    /// Its version (semver).
    pub version: String,
    /// Who publishes it.
    pub publisher: String,
    /// One or two sentences: what it does.
    pub description: String,
    /// SPDX license expression, e.g. `Apache-2.0 OR MIT`.
    pub license: String,
    /// The world it is built for: `sinkhost:sink/plugin@<WIT version>` (or
    /// `sinkhost:sink/sql-plugin@...` for database sinks), whose version is
    /// checked against the version of its `sinkhost:sink/sink` export.
    pub wit_world: String,
    /// The grants it asks for.
    #[serde(default)]
    pub grants: Vec<DeclaredGrant>,
    /// JSON Schema (draft 2020-12 or 7) of the config's `sink` section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<Value>,
}

/// Why a manifest document is not a valid manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not the manifest's shape.
    #[error("the manifest is not a valid {MANIFEST_SCHEMA} document: at `{field}`: {reason}")]
    Shape {
        /// Where in the document (`.` for the top level).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A field's value is not acceptable.
    #[error("manifest field `{field}`: {reason}")]
    Invalid {
        /// The field, e.g. `grants[1].reason`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The custom section cannot be read.
    #[error("the `{MANIFEST_SECTION}` section cannot be read: {0}")]
    Section(#[from] section::SectionError),
}

/// Why a plugin's manifest, component and config do not agree. Each case
/// says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestProblem {
    /// The manifest itself is invalid.
    #[error("{0}")]
    Invalid(#[from] ManifestError),
    /// `wit_world` is not the component's real sink export version.
    #[error("its manifest declares wit_world `{declared}`, but the component exports sinkhost:sink/sink@{actual} (expected wit_world `{WIT_PACKAGE}/plugin@{actual}` or `{WIT_PACKAGE}/sql-plugin@{actual}`)")]
    WorldMismatch {
        /// What the manifest says.
        declared: String,
        /// The version of the real export.
        actual: String,
    },
    /// An import needs a grant the manifest does not declare.
    #[error("it imports `{import}`, which needs the `{grant}` grant, but its manifest declares no `{grant}` grant (a plugin may only use what it declares)")]
    UndeclaredImport {
        /// The import.
        import: String,
        /// The grant it needs.
        grant: &'static str,
    },
    /// A grant the manifest says is required was not given.
    #[error("its manifest declares the `{grant}` grant as required (\"{reason}\"), but the config gives no plugin.grants.{grant}")]
    RequiredGrantNotGiven {
        /// The grant.
        grant: &'static str,
        /// The manifest's reason.
        reason: String,
    },
    /// The `sink` section does not match `config_schema`.
    #[error("the `sink` section does not match the config schema in its manifest: {violations}")]
    SinkConfig {
        /// `<JSON pointer>: <reason>` per problem, `; `-separated.
        violations: String,
    },
}

impl Manifest {
    /// Parses and validates a manifest document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::Shape {
                field: ".".into(),
                reason: format!(
                    "{} bytes, more than the {MAX_MANIFEST_BYTES} allowed",
                    bytes.len()
                ),
            });
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let manifest: Manifest =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                ManifestError::Shape {
                    field: err.path().to_string(),
                    reason: err.inner().to_string(),
                }
            })?;
        deserializer.end().map_err(|err| ManifestError::Shape {
            field: ".".into(),
            reason: err.to_string(),
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The manifest embedded in a component's bytes, if it has one.
    pub fn from_component(bytes: &[u8]) -> Result<Option<Self>, ManifestError> {
        section::read_custom(bytes, MANIFEST_SECTION)?
            .map(Self::from_json)
            .transpose()
    }

    /// The document as embedded: compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks every field's value (what serde cannot).
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |field: &str, reason: String| ManifestError::Invalid {
            field: field.to_string(),
            reason,
        };
        if self.schema != MANIFEST_SCHEMA {
            return Err(invalid(
                "schema",
                format!("must be `{MANIFEST_SCHEMA}`, not `{}`", self.schema),
            ));
        }
        check_name(&self.name).map_err(|reason| invalid("name", reason))?;
        semver::Version::parse(&self.version).map_err(|err| {
            invalid(
                "version",
                format!("`{}` is not a semantic version: {err}", self.version),
            )
        })?;
        check_text(&self.publisher, 200).map_err(|reason| invalid("publisher", reason))?;
        check_text(&self.description, 2_000).map_err(|reason| invalid("description", reason))?;
        check_spdx(&self.license).map_err(|reason| invalid("license", reason))?;
        self.world_version()
            .map_err(|reason| invalid("wit_world", reason))?;
        for (index, grant) in self.grants.iter().enumerate() {
            check_text(&grant.reason, 500)
                .map_err(|reason| invalid(&format!("grants[{index}].reason"), reason))?;
            if self.grants[..index].iter().any(|g| g.kind == grant.kind) {
                return Err(invalid(
                    &format!("grants[{index}].kind"),
                    format!("`{}` is declared more than once", grant.kind),
                ));
            }
        }
        if let Some(schema) = &self.config_schema {
            compile_schema(schema).map_err(|reason| invalid("config_schema", reason))?;
        }
        Ok(())
    }

    /// The WIT version in `wit_world`.
    pub fn world_version(&self) -> Result<semver::Version, String> {
        let world_and_version = self
            .wit_world
            .strip_prefix(WIT_PACKAGE)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split_once('@'))
            .filter(|(world, _)| SINK_WORLDS.contains(world));
        let Some((_, version)) = world_and_version else {
            return Err(format!(
                "must be `{WIT_PACKAGE}/<world>@<version>` with world one of {}, not `{}`",
                SINK_WORLDS.join(", "),
                self.wit_world
            ));
        };
        semver::Version::parse(version)
            .map_err(|err| format!("`{version}` is not a semantic version: {err}"))
    }

    /// The declaration of grant `kind`, if any.
    pub fn declared(&self, kind: GrantKind) -> Option<&DeclaredGrant> {
        self.grants.iter().find(|grant| grant.kind == kind)
    }

    /// Checks `wit_world` against the version of the component's real
    /// `sinkhost:sink/sink` export.
    pub fn check_world(&self, sink_version: &str) -> Result<(), ManifestProblem> {
        let matches = match (self.world_version(), semver::Version::parse(sink_version)) {
            (Ok(declared), Ok(actual)) => declared == actual,
            _ => false,
        };
        if matches {
            Ok(())
        } else {
            Err(ManifestProblem::WorldMismatch {
                declared: self.wit_world.clone(),
                actual: sink_version.to_string(),
            })
        }
    }

    /// Refuses the first import that needs a grant the manifest does not
    /// declare.
    pub fn check_imports<'a>(
        &self,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ManifestProblem> {
        for import in imports {
            if let ImportNeed::Grant(grant) = import_need(import) {
                let declared =
                    GrantKind::from_name(grant).is_some_and(|kind| self.declared(kind).is_some());
                if !declared {
                    return Err(ManifestProblem::UndeclaredImport {
                        import: import.to_string(),
                        grant,
                    });
                }
            }
        }
        Ok(())
    }

    /// Compares the declared grants with what the operator gives
    /// (`given(kind)`: whether `plugin.grants.<kind>` lists anything).
    /// A required grant not given is an error; a grant given but not
    /// declared is a warning (returned).
    pub fn check_grants(
        &self,
        given: impl Fn(GrantKind) -> bool,
    ) -> Result<Vec<String>, ManifestProblem> {
        for grant in self.grants.iter().filter(|grant| grant.required) {
            if !given(grant.kind) {
                return Err(ManifestProblem::RequiredGrantNotGiven {
                    grant: grant.kind.as_str(),
                    reason: grant.reason.clone(),
                });
            }
        }
        Ok(GrantKind::ALL
            .into_iter()
            .filter(|kind| given(*kind) && self.declared(*kind).is_none())
            .map(|kind| {
                format!(
                    "plugin.grants.{kind} is given, but the manifest of plugin `{}` declares no `{kind}` grant: it says it does not need it (remove the grant)",
                    self.name
                )
            })
            .collect())
    }

    /// Validates the config's `sink` section against `config_schema` (no
    /// schema: nothing to check). Values are never quoted in the errors:
    /// the section may hold secrets.
    pub fn check_sink_config(&self, sink: &Value) -> Result<(), ManifestProblem> {
        let Some(schema) = &self.config_schema else {
            return Ok(());
        };
        let validator = compile_schema(schema).map_err(|reason| {
            ManifestProblem::Invalid(ManifestError::Invalid {
                field: "config_schema".into(),
                reason,
            })
        })?;
        let violations: Vec<String> = validator
            .iter_errors(sink)
            .take(MAX_REPORTED_VIOLATIONS)
            .map(|error| {
                format!(
                    "/sink{}: {}",
                    error.instance_path().as_str(),
                    error.masked()
                )
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(ManifestProblem::SinkConfig {
                violations: violations.join("; "),
            })
        }
    }
}

/// Compiles a JSON Schema: draft 2020-12 (the default) or 7, no remote
/// references (the `jsonschema` crate is built without resolvers).
fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    match schema {
        Value::Object(object) => {
            if let Some(draft) = object.get("$schema") {
                let accepted = draft
                    .as_str()
                    .is_some_and(|uri| ACCEPTED_DRAFTS.contains(&uri));
                if !accepted {
                    return Err(format!(
                        "`$schema` must be one of {} (or absent for 2020-12)",
                        ACCEPTED_DRAFTS.join(", ")
                    ));
                }
            }
        }
        Value::Bool(_) => {}
        _ => return Err("must be a JSON Schema: an object (or true/false)".into()),
    }
    jsonschema::validator_for(schema).map_err(|err| format!("not a valid JSON Schema: {err}"))
}

/// A plugin name: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1 to 64 ASCII letters, digits, `-`, `_` or `.`"
        ))
    }
}

/// Non-empty, at most `max` characters, no control characters.
fn check_text(text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not hold control characters (newlines, tabs...)".into());
    }
    Ok(())
}

/// The shape of an SPDX license expression: license ids (`MIT`,
/// `Apache-2.0`, `LicenseRef-acme`, a trailing `+`) joined by `AND`, `OR`,
/// `WITH` and parentheses. Ids are not checked against the SPDX list.
fn check_spdx(expression: &str) -> Result<(), String> {
    let spaced = expression.replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut expect_id = true;
    let mut depth = 0usize;
    let bad = || {
        format!(
            "`{expression}` is not an SPDX license expression (e.g. `MIT`, `Apache-2.0 OR MIT`)"
        )
    };
    for token in &tokens {
        match *token {
            "(" if expect_id => depth += 1,
            ")" if !expect_id && depth > 0 => depth -= 1,
            "AND" | "OR" | "WITH" if !expect_id => expect_id = true,
            id if expect_id
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | ':')) =>
            {
                expect_id = false;
            }
            _ => return Err(bad()),
        }
    }
    if tokens.is_empty() || expect_id || depth != 0 {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
