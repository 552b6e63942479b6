//! Where a granted database is and how to log in, read from the host's
//! environment once at load time. Never logged, never shown to a plugin.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::config::{SqlDriver, SqlGrant, SqlTlsMode};

/// How the connection is encrypted, resolved from the grant's `tls`, the
/// URL's own TLS parameters, or the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// What is required of the server.
    pub mode: SqlTlsMode,
    /// CA certificates (PEM) to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Tls {
    /// The default for `host`: plaintext only over loopback.
    fn default_for(host: &str) -> Self {
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback());
        Self {
            mode: if loopback {
                SqlTlsMode::Disable
            } else {
                SqlTlsMode::VerifyFull
            },
            ca_file: None,
        }
    }
}

/// Address and credentials of one granted database.
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database (PostgreSQL, MySQL) or service name (Oracle).
    pub service: String,
    /// User name.
    pub user: String,
    /// Password; wiped from memory when dropped.
    pub password: Zeroizing<String>,
    /// How the connection is encrypted.
    pub tls: Tls,
}

impl Endpoint {
    /// Resolves a grant: from the URL in `url_env`, or from its fields and
    /// the password in `password_env`. Errors name the variable or field,
    /// never its value.
    pub fn from_grant(grant: &SqlGrant) -> Result<Self, String> {
        let mut endpoint = Self::from_grant_address(grant)?;
        if let Some(tls) = &grant.tls {
            if endpoint.tls_from_url {
                return Err(String::from(
                    "tls: the URL in url_env sets TLS parameters too; give them in one place",
                ));
            }
            endpoint.endpoint.tls = Tls {
                mode: tls.mode,
                ca_file: tls.ca_file.clone(),
            };
        }
        Ok(endpoint.endpoint)
    }

    fn from_grant_address(grant: &SqlGrant) -> Result<Parsed, String> {
        match &grant.url_env {
            Some(variable) => {
                let url = Zeroizing::new(read_variable(variable)?);
                Self::parse_url(grant.driver, &url)
                    .map_err(|message| format!("url_env: the URL in `{variable}` {message}"))
            }
            None => {
                let password = match &grant.password_env {
                    Some(variable) => Zeroizing::new(read_variable(variable)?),
                    None => Zeroizing::new(String::new()),
                };
                let host = grant.host.clone().unwrap_or_default();
                Ok(Parsed {
                    endpoint: Self {
                        tls: Tls::default_for(&host),
                        host,
                        port: grant.port.unwrap_or(grant.driver.default_port()),
                        service: grant.service.clone().unwrap_or_default(),
                        user: grant.user.clone().unwrap_or_default(),
                        password,
                    },
                    tls_from_url: false,
                })
            }
        }
    }

    /// Parses `scheme://user:password@host:port/service[?parameters]`. The
    /// message never quotes the URL (it holds the password).
    #[cfg(test)]
    pub fn from_url(driver: SqlDriver, text: &str) -> Result<Self, String> {
        Self::parse_url(driver, text).map(|parsed| parsed.endpoint)
    }

    fn parse_url(driver: SqlDriver, text: &str) -> Result<Parsed, String> {
        let url = url::Url::parse(text).map_err(|err| format!("is not a URL ({err})"))?;
        let expected: &[&str] = match driver {
            SqlDriver::Postgres => &["postgres", "postgresql"],
            SqlDriver::Mysql => &["mysql", "mariadb"],
            SqlDriver::Oracle => &["oracle"],
        };
        if !expected.contains(&url.scheme()) {
            return Err(format!(
                "must start with {}:// for the {} driver",
                expected[0],
                driver.name()
            ));
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or("has no host")?;
        let service = url.path().trim_start_matches('/');
        if service.is_empty() {
            return Err(String::from(
                "has no database or service name after the host",
            ));
        }
        if url.username().is_empty() {
            return Err(String::from("has no user name"));
        }
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| String::from("has a user name or password that is not UTF-8"))
        };
        if url.fragment().is_some() {
            return Err(String::from("has a #fragment, which the host would ignore"));
        }
        let host = host.trim_matches(['[', ']']).to_string();
        let (tls, tls_from_url) = match url_tls(driver, &url)? {
            Some(tls) => (tls, true),
            None => (Tls::default_for(&host), false),
        };
        Ok(Parsed {
            endpoint: Self {
                host,
                port: url.port().unwrap_or(driver.default_port()),
                service: decode(service)?,
                user: decode(url.username())?,
                password: Zeroizing::new(decode(url.password().unwrap_or(""))?),
                tls,
            },
            tls_from_url,
        })
    }
}

/// An endpoint, and whether its URL set TLS parameters itself.
struct Parsed {
    endpoint: Endpoint,
    tls_from_url: bool,
}

/// The URL's query parameters, checked against an allow-list: only the TLS
/// parameters the host honours are accepted (and honoured); any other is
/// refused by name, so a parameter that looks in effect always is.
/// PostgreSQL: `sslmode` (`disable`, `require`, `verify-ca`,
/// `verify-full`; not `allow` or `prefer`, which fall back to plaintext) and
/// `sslrootcert`. MySQL: `ssl-mode` (`DISABLED`, `REQUIRED`, `VERIFY_CA`,
/// `VERIFY_IDENTITY`; not `PREFERRED`) and `ssl-ca`. Oracle: none.
fn url_tls(driver: SqlDriver, url: &url::Url) -> Result<Option<Tls>, String> {
    let (mode_name, ca_name): (&str, &str) = match driver {
        SqlDriver::Postgres => ("sslmode", "sslrootcert"),
        SqlDriver::Mysql => ("ssl-mode", "ssl-ca"),
        SqlDriver::Oracle => ("", ""),
    };
    let mut mode = None;
    let mut ca_file = None;
    for (name, value) in url.query_pairs() {
        if !mode_name.is_empty() && name == mode_name {
            if mode.is_some() {
                return Err(format!("sets `{name}` twice"));
            }
            mode = Some(parse_mode(driver, &value).ok_or_else(|| {
                format!(
                    "has `{name}={value}`, which the host does not honour                      (use one of: {})",
                    mode_names(driver)
                )
            })?);
        } else if !ca_name.is_empty() && name == ca_name {
            if ca_file.is_some() {
                return Err(format!("sets `{name}` twice"));
            }
            ca_file = Some(PathBuf::from(value.into_owned()));
        } else {
            return Err(format!(
                "has the parameter `{name}`, which the host does not honour;                  remove it{}",
                if mode_name.is_empty() {
                    String::new()
                } else {
                    format!(" (only `{mode_name}` and `{ca_name}` are accepted)")
                }
            ));
        }
    }
    match (mode, ca_file) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(format!(
            "has `{ca_name}` without `{mode_name}`; say which check it is for"
        )),
        (Some(mode), ca_file) => {
            if ca_file.is_some() && matches!(mode, SqlTlsMode::Disable | SqlTlsMode::Require) {
                return Err(format!(
                    "has `{ca_name}` with a `{mode_name}` that checks no certificate"
                ));
            }
            Ok(Some(Tls { mode, ca_file }))
        }
    }
}

fn parse_mode(driver: SqlDriver, value: &str) -> Option<SqlTlsMode> {
    match (driver, value) {
        (SqlDriver::Postgres, "disable") => Some(SqlTlsMode::Disable),
        (SqlDriver::Postgres, "require") => Some(SqlTlsMode::Require),
        (SqlDriver::Postgres, "verify-ca") => Some(SqlTlsMode::VerifyCa),
        (SqlDriver::Postgres, "verify-full") => Some(SqlTlsMode::VerifyFull),
        (SqlDriver::Mysql, value) => match value.to_ascii_uppercase().as_str() {
            "DISABLED" => Some(SqlTlsMode::Disable),
            "REQUIRED" => Some(SqlTlsMode::Require),
            "VERIFY_CA" => Some(SqlTlsMode::VerifyCa),
            "VERIFY_IDENTITY" => Some(SqlTlsMode::VerifyFull),
            _ => None,
        },
        _ => None,
    }
}

fn mode_names(driver: SqlDriver) -> &'static str {
    match driver {
        SqlDriver::Postgres => "disable, require, verify-ca, verify-full",
        SqlDriver::Mysql => "DISABLED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY",
        SqlDriver::Oracle => "none",
    }
}

fn read_variable(variable: &str) -> Result<String, String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err(format!("environment variable `{variable}` is empty")),
        Err(std::env::VarError::NotPresent) => {
            Err(format!("environment variable `{variable}` is not set"))
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("environment variable `{variable}` is not UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_and_decoded() {
        let endpoint = Endpoint::from_url(
            SqlDriver::Postgres,
            "postgres://app:p%40ss@db.example:6543/events",
        )
        .expect("url");
        assert_eq!(
            (endpoint.host.as_str(), endpoint.port),
            ("db.example", 6543)
        );
        assert_eq!(
            (endpoint.user.as_str(), endpoint.password.as_str()),
            ("app", "p@ss")
        );
        assert_eq!(endpoint.service, "events");
        let oracle =
            Endpoint::from_url(SqlDriver::Oracle, "oracle://app:pw@[::1]/FREEPDB1").expect("url");
        assert_eq!((oracle.host.as_str(), oracle.port), ("::1", 1521));
    }

    #[test]
    fn url_parameters_are_honoured_or_refused_by_name() {
        let tls = |driver, url: &str| Endpoint::from_url(driver, url).map(|e| e.tls);
        assert_eq!(
            tls(SqlDriver::Postgres, "postgres://a:pw@db/x")
                .expect("default")
                .mode,
            SqlTlsMode::VerifyFull,
            "a remote host is verified by default"
        );
        assert_eq!(
            tls(SqlDriver::Postgres, "postgres://a:pw@127.0.0.1/x")
                .expect("loopback")
                .mode,
            SqlTlsMode::Disable
        );
        let verified = tls(
            SqlDriver::Postgres,
            "postgres://a:pw@db/x?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .expect("honoured");
        assert_eq!(verified.mode, SqlTlsMode::VerifyFull);
        assert_eq!(verified.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(
            tls(
                SqlDriver::Mysql,
                "mysql://a:pw@db/x?ssl-mode=VERIFY_CA&ssl-ca=/ca.pem"
            )
            .expect("mysql")
            .mode,
            SqlTlsMode::VerifyCa
        );
        for (driver, url, named) in [
            (
                SqlDriver::Postgres,
                "postgres://a:secret@db/x?sslmode=prefer",
                "sslmode=prefer",
            ),
            (
                SqlDriver::Postgres,
                "postgres://a:secret@db/x?sslmode=allow",
                "sslmode=allow",
            ),
            (
                SqlDriver::Postgres,
                "postgres://a:secret@db/x?options=-c%20x",
                "`options`",
            ),
            (
                SqlDriver::Postgres,
                "postgres://a:secret@db/x?target_session_attrs=any",
                "target_session_attrs",
            ),
            (
                SqlDriver::Postgres,
                "postgres://a:secret@db/x?sslrootcert=/ca.pem",
                "without",
            ),
            (
                SqlDriver::Postgres,
                "postgres://a:secret@db/x?sslmode=require&sslrootcert=/ca.pem",
                "checks no",
            ),
            (
                SqlDriver::Postgres,
                "postgres://a:secret@db/x?sslmode=disable&sslmode=verify-full",
                "twice",
            ),
            (
                SqlDriver::Mysql,
                "mysql://a:secret@db/x?ssl-mode=PREFERRED",
                "ssl-mode=PREFERRED",
            ),
            (
                SqlDriver::Mysql,
                "mysql://a:secret@db/x?sslmode=verify-full",
                "`sslmode`",
            ),
            (
                SqlDriver::Mysql,
                "mysql://a:secret@db/x?charset=latin1",
                "charset",
            ),
            (
                SqlDriver::Oracle,
                "oracle://a:secret@db/x?ssl=true",
                "`ssl`",
            ),
            (
                SqlDriver::Postgres,
                "postgres://a:secret@db/x#frag",
                "fragment",
            ),
        ] {
            let message = Endpoint::from_url(driver, url).err().expect(url);
            assert!(message.contains(named), "{url}: {message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn bad_urls_never_echo_the_password() {
        for (driver, url) in [
            (SqlDriver::Mysql, "postgres://app:secret@db/x"),
            (SqlDriver::Mysql, "mysql://app:secret@db"),
            (SqlDriver::Mysql, "mysql://:secret@db/x"),
            (SqlDriver::Mysql, "secret"),
        ] {
            let message = Endpoint::from_url(driver, url).err().expect("refused");
            assert!(!message.contains("secret"), "{message}");
        }
    }
}
