//! What an operator can grant a plugin. Deny by default: a plugin reaches
//! nothing outside what is listed in `plugin.grants`.
//!
//! Each capability is one module with the same lifecycle:
//! 1. **prepare**: validate the grant against the host (paths exist, can be
//!    created) once, at load time, with errors naming the grant;
//! 2. **apply**: add it to a new instance's WASI context;
//! 3. **describe**: say what it allows, for logs and `sinkhost inspect`.
//!
//! Directories (`files`), outgoing HTTP (`http`) and database connections
//! (`sql`) exist today.

pub mod files;
pub mod http;
pub mod refusals;
pub mod sql;

use wasmtime_wasi::WasiCtxBuilder;

use crate::config::Grants;

pub use files::Files;
pub use http::{Http, HttpHooks};
pub use refusals::{Refusal, Refusals};
pub use sql::Sql;

/// A grant that cannot be honoured on this host.
#[derive(Debug, thiserror::Error)]
#[error("plugin.grants.{location}: {message}")]
pub struct GrantError {
    /// Where in `plugin.grants`, e.g. `files[0].host_path`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

/// The lifecycle every capability module follows, so new grants (`http`,
/// `sql`) are added as siblings of [`files`] without touching the runtime.
pub trait Capability: Sized {
    /// The operator's grant entries of this kind (`plugin.grants.<NAME>`).
    type Grant;
    /// The grant's name in `plugin.grants` and in `sinkhost inspect`.
    const NAME: &'static str;

    /// Validates the grants against the host once, at load time (paths
    /// exist or can be created...), with errors naming the grant.
    fn prepare(grants: &[Self::Grant]) -> Result<Self, GrantError>;

    /// Adds the capability to a new instance's WASI context.
    fn apply(&self, builder: &mut WasiCtxBuilder) -> Result<(), GrantError>;

    /// One line per grant: what it allows, for logs and `inspect`.
    fn describe(&self) -> Vec<String>;
}

/// Every granted capability, checked and ready to apply to new instances.
#[derive(Debug, Clone, Default)]
pub struct PreparedGrants {
    files: Files,
    http: Http,
    sql: Sql,
    refusals: Refusals,
}

impl PreparedGrants {
    /// Checks the operator's grants against the host.
    pub fn prepare(grants: &Grants) -> Result<Self, GrantError> {
        let refusals = Refusals::default();
        Ok(Self {
            files: Files::prepare(&grants.files)?,
            http: Http::prepare(&grants.http)?.with_refusals(refusals.clone()),
            sql: Sql::prepare(&grants.sql)?.with_refusals(refusals.clone()),
            refusals,
        })
    }

    /// Adds the grants to a new instance's WASI context. Nothing else is
    /// added: no environment, no arguments, no network.
    pub fn apply(&self, builder: &mut WasiCtxBuilder) -> Result<(), GrantError> {
        self.files.apply(builder)?;
        self.http.apply(builder)
    }

    /// The `wasi:http` hooks of a new instance: requests reach only the
    /// granted origins (none when nothing is granted).
    pub fn http_hooks(&self) -> HttpHooks {
        self.http.hooks()
    }

    /// The granted directories (their quotas are shared by every instance).
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// The granted databases, shared by every instance.
    pub fn sql(&self) -> &Sql {
        &self.sql
    }

    /// What the host refused the plugin so far (shared by its instances).
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// Whether the named grant (`files`, `http`, `sql`) lists anything.
    pub fn has(&self, grant: &str) -> bool {
        match grant {
            Files::NAME => !self.files.is_empty(),
            Http::NAME => !self.http.is_empty(),
            Sql::NAME => !self.sql.is_empty(),
            _ => false,
        }
    }

    /// One line per grant, for logs.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = self.files.describe();
        lines.extend(self.http.describe());
        lines.extend(self.sql.describe());
        lines
    }
}

/// What a component import needs from the operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum ImportNeed {
    /// Always provided, harmless (clocks, random, stdio to the host log, the
    /// host log interface, an empty environment).
    Provided,
    /// Provided, but only reaches what the named grant lists.
    Grant(&'static str),
    /// Linked so the component loads, but always refused at run time.
    Denied(&'static str),
    /// The host does not provide it: the component cannot be loaded.
    Unsupported(&'static str),
}

impl std::fmt::Display for ImportNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportNeed::Provided => write!(f, "provided"),
            ImportNeed::Grant(grant) => write!(f, "needs grant `{grant}`"),
            ImportNeed::Denied(why) => write!(f, "denied: {why}"),
            ImportNeed::Unsupported(why) => write!(f, "not provided: {why}"),
        }
    }
}

/// Classifies one import of a component by its interface name
/// (e.g. `wasi:filesystem/preopens@0.2.6`).
pub fn import_need(name: &str) -> ImportNeed {
    let interface = name.split('@').next().unwrap_or(name);
    let package = interface.split('/').next().unwrap_or(interface);
    match package {
        "wasi:filesystem" => ImportNeed::Grant(Files::NAME),
        "wasi:sockets" => ImportNeed::Denied("plain sockets are never granted; use the http grant"),
        "wasi:http"
            if interface == "wasi:http/outgoing-handler" || interface == "wasi:http/types" =>
        {
            ImportNeed::Grant(Http::NAME)
        }
        "wasi:http" => ImportNeed::Unsupported("sinks may send HTTP requests, not serve them"),
        "wasi:clocks" | "wasi:random" | "wasi:io" | "wasi:cli" => ImportNeed::Provided,
        "sinkhost:sink"
            if interface == "sinkhost:sink/log" || interface == "sinkhost:sink/types" =>
        {
            ImportNeed::Provided
        }
        "sinkhost:sink" if interface == "sinkhost:sink/sql" => ImportNeed::Grant(Sql::NAME),
        _ => ImportNeed::Unsupported("unknown interface"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_classified() {
        assert_eq!(
            import_need("wasi:filesystem/preopens@0.2.6"),
            ImportNeed::Grant("files")
        );
        assert_eq!(
            import_need("wasi:cli/environment@0.2.9"),
            ImportNeed::Provided
        );
        assert_eq!(import_need("sinkhost:sink/log@0.1.0"), ImportNeed::Provided);
        assert!(matches!(
            import_need("wasi:sockets/tcp@0.2.0"),
            ImportNeed::Denied(_)
        ));
        assert_eq!(
            import_need("wasi:http/outgoing-handler@0.2.0"),
            ImportNeed::Grant("http")
        );
        assert_eq!(
            import_need("wasi:http/types@0.2.6"),
            ImportNeed::Grant("http")
        );
        assert_eq!(
            import_need("sinkhost:sink/sql@0.1.0"),
            ImportNeed::Grant("sql")
        );
        assert!(matches!(
            import_need("wasi:http/incoming-handler@0.2.0"),
            ImportNeed::Unsupported(_)
        ));
        assert!(matches!(
            import_need("acme:evil/thing"),
            ImportNeed::Unsupported(_)
        ));
    }
}
