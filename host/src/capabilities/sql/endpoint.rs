//! Where a granted database is and how to log in, read from the host's
//! environment once at load time. Never logged, never shown to a plugin.

use zeroize::Zeroizing;

use crate::config::{SqlDriver, SqlGrant};

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
}

impl Endpoint {
    /// Resolves a grant: from the URL in `url_env`, or from its fields and
    /// the password in `password_env`. Errors name the variable or field,
    /// never its value.
    pub fn from_grant(grant: &SqlGrant) -> Result<Self, String> {
        match &grant.url_env {
            Some(variable) => {
                let url = Zeroizing::new(read_variable(variable)?);
                Self::from_url(grant.driver, &url)
                    .map_err(|message| format!("url_env: the URL in `{variable}` {message}"))
            }
            None => {
                let password = match &grant.password_env {
                    Some(variable) => Zeroizing::new(read_variable(variable)?),
                    None => Zeroizing::new(String::new()),
                };
                Ok(Self {
                    host: grant.host.clone().unwrap_or_default(),
                    port: grant.port.unwrap_or(grant.driver.default_port()),
                    service: grant.service.clone().unwrap_or_default(),
                    user: grant.user.clone().unwrap_or_default(),
                    password,
                })
            }
        }
    }

    /// Parses `scheme://user:password@host:port/service`. The message never
    /// quotes the URL (it holds the password).
    pub fn from_url(driver: SqlDriver, text: &str) -> Result<Self, String> {
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
        Ok(Self {
            host: host.trim_matches(['[', ']']).to_string(),
            port: url.port().unwrap_or(driver.default_port()),
            service: decode(service)?,
            user: decode(url.username())?,
            password: Zeroizing::new(decode(url.password().unwrap_or(""))?),
        })
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
