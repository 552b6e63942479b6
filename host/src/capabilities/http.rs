//! The `http` capability: outgoing HTTP requests through the standard
//! `wasi:http` interface, to the origins the operator granted and nowhere
//! else, with credentials added by the host.
//!
//! Every request a plugin sends reaches [`HttpHooks::send_request`], which
//! the host implements itself (wasmtime-wasi-http's default sender is not
//! compiled in), in this order:
//!
//! 1. **origin**: scheme, host and port must match a grant exactly (a grant
//!    host written `*.example.com` matches names under `example.com`);
//!    otherwise the request fails with `HTTP-request-denied` before any DNS
//!    lookup or connection;
//!    When several grants match (a wildcard and an exact host, two
//!    wildcards), the most specific one is used, for its credentials and
//!    its limits alike: an exact host beats any wildcard, a longer wildcard
//!    suffix beats a shorter one; the same origin granted twice is a
//!    configuration error. So a request never carries the credentials of a
//!    grant other than the one it matched most closely;
//! 2. **addresses**: the host name is resolved once; every address must be
//!    an ordinary public destination (an allow-list: IPv4 outside every
//!    range of the IANA special-purpose registry, IPv6 global unicast
//!    outside that registry's ranges; IPv4-mapped, NAT64 and 6to4 addresses
//!    are judged by the IPv4 address they carry; see [`special_purpose`]),
//!    else the request fails with `destination-IP-prohibited`, unless the
//!    grant names that address (its origin is that IP literal, or it is in
//!    `allowed_addresses`). The connection then goes to the checked
//!    address, never to a second lookup, so a DNS answer that changes
//!    between check and connect (rebinding) gains nothing;
//! 3. **limits**: one of the grant's `max_concurrent_requests` slots is
//!    taken for the whole exchange; the request body is read into memory up
//!    to `max_request_body_bytes`; the whole exchange, up to the last byte of
//!    the response body, must end within `timeout_ms`; the response body
//!    stops with an error past `max_response_body_bytes`;
//! 4. **credentials**: headers the plugin set for authentication are
//!    removed and the grant's `auth` is applied: bearer, basic, a named
//!    header, or an AWS SigV4 signature over the request and its body. A
//!    grant with credentials and a plain `http://` origin is refused at
//!    load unless it sets `allow_plaintext_credentials`.
//!
//! Redirects are never followed by the host: a 3xx response goes back to
//! the plugin, and a request to the new location is a new request, checked
//! like the first.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::uri::Scheme;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiHttpHooks};
use zeroize::Zeroizing;

use super::{Capability, GrantError};
use crate::config::{read_secret_env, HttpAuth, HttpGrant};

/// Headers a SigV4 signature sets; the plugin's own values are dropped.
const SIGV4_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
];

/// The boxed future a send hook returns (wasmtime-wasi-http's shape).
type SendFuture =
    Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), HttpError>> + Send>;
/// Reports a late connection error to the guest; ours never has one.
type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
/// Request and response bodies as wasmtime-wasi-http hands them around.
type WasiBody = wasmtime_wasi_http::WasiBody;

/// A granted origin: scheme, lower-case host (or `*.suffix`) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    https: bool,
    host: HostPattern,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// One name, lower case, without a trailing dot.
    Name(String),
    /// One IP address, written as the origin's host.
    Address(IpAddr),
    /// `*.suffix`: any name with at least one more label.
    Subdomains(String),
}

impl Origin {
    /// Parses `scheme://host[:port]` (no path, no user info). The error says
    /// what is wrong, for the config error message.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` is not an origin: write scheme://host[:port], e.g. https://api.example.com"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => {
                return Err(format!(
                    "scheme `{scheme}` is not supported: use http or https"
                ))
            }
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{text}` must be only scheme://host[:port], without path, query or user"
            ));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("`{authority}` has an invalid port"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let host = match host.strip_prefix("*.") {
            Some(suffix) if valid_name(suffix) => HostPattern::Subdomains(normal_name(suffix)),
            Some(_) => return Err(format!("`{host}` is not a valid wildcard host")),
            None => match parse_address(host) {
                Some(address) => HostPattern::Address(address),
                None if valid_name(host) => HostPattern::Name(normal_name(host)),
                None => return Err(format!("`{host}` is not a valid host name or address")),
            },
        };
        Ok(Self { https, host, port })
    }

    /// How closely this origin names a host, to choose among grants that
    /// match the same request: an exact name or address beats every
    /// wildcard; among wildcards, the longer suffix is the closer one.
    fn specificity(&self) -> (u8, usize) {
        match &self.host {
            HostPattern::Name(_) | HostPattern::Address(_) => (1, 0),
            HostPattern::Subdomains(suffix) => (0, suffix.len()),
        }
    }

    /// Whether this is a plain `http://` origin (nothing on the wire is
    /// encrypted).
    pub fn is_plaintext(&self) -> bool {
        !self.https
    }

    fn matches(&self, target: &Target) -> bool {
        if self.https != target.https || self.port != target.port {
            return false;
        }
        match (&self.host, &target.host) {
            (HostPattern::Address(granted), TargetHost::Address(asked)) => granted == asked,
            (HostPattern::Name(granted), TargetHost::Name(asked)) => granted == asked,
            (HostPattern::Subdomains(suffix), TargetHost::Name(asked)) => asked
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty()),
            _ => false,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_origin(f, self.https, &self.host, self.port)
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Name(name) => f.write_str(name),
            HostPattern::Address(address) => write_address(f, *address),
            HostPattern::Subdomains(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// `scheme://host:port`, for logs and descriptions.
fn write_origin(
    f: &mut std::fmt::Formatter<'_>,
    https: bool,
    host: &dyn std::fmt::Display,
    port: u16,
) -> std::fmt::Result {
    let scheme = if https { "https" } else { "http" };
    write!(f, "{scheme}://{host}:{port}")
}

/// An address as a URL host: IPv6 in brackets.
fn write_address(f: &mut std::fmt::Formatter<'_>, address: IpAddr) -> std::fmt::Result {
    match address {
        IpAddr::V6(v6) => write!(f, "[{v6}]"),
        IpAddr::V4(v4) => write!(f, "{v4}"),
    }
}

/// Where a plugin's request wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    host: TargetHost,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TargetHost {
    Name(String),
    Address(IpAddr),
}

impl Target {
    fn from_uri(uri: &http::Uri) -> Option<Self> {
        let https = match uri.scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => true,
            Some(scheme) if *scheme == Scheme::HTTP => false,
            _ => return None,
        };
        let host = uri.host()?;
        let host = match parse_address(host) {
            Some(address) => TargetHost::Address(address),
            None if valid_name(host) => TargetHost::Name(normal_name(host)),
            None => return None,
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Self { https, host, port })
    }

    /// The host as TLS names it (server name indication, certificate check).
    fn server_name(&self) -> Option<rustls::pki_types::ServerName<'static>> {
        match &self.host {
            TargetHost::Name(name) => rustls::pki_types::ServerName::try_from(name.clone()).ok(),
            TargetHost::Address(address) => {
                Some(rustls::pki_types::ServerName::IpAddress((*address).into()))
            }
        }
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            port => Some((host, Some(port.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn parse_address(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn valid_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// One entry of an IANA special-purpose address registry: the network, its
/// prefix length and what it is (for the refusal log and the tests).
struct SpecialRange<A> {
    network: A,
    prefix: u8,
    name: &'static str,
}

/// The IANA IPv4 Special-Purpose Address Registry (RFC 6890 and its
/// updates), plus multicast and the reserved 240/4 which it leaves to other
/// registries. Every address in these ranges is refused unless a grant names
/// it: none of them is an ordinary public destination, and most of them are
/// this host's neighbours (private networks, CGNAT, which also holds
/// Alibaba Cloud's metadata address 100.100.100.200, the link-local
/// 169.254/16 with the AWS/GCP/Azure metadata address 169.254.169.254).
const SPECIAL_V4: &[SpecialRange<Ipv4Addr>] = &[
    v4(0, 0, 0, 0, 8, "this network"),
    v4(10, 0, 0, 0, 8, "private-use"),
    v4(
        100,
        64,
        0,
        0,
        10,
        "shared address space (CGNAT; 100.100.100.200 is a cloud metadata address)",
    ),
    v4(127, 0, 0, 0, 8, "loopback"),
    v4(
        169,
        254,
        0,
        0,
        16,
        "link-local (169.254.169.254 is the cloud metadata address)",
    ),
    v4(172, 16, 0, 0, 12, "private-use"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments"),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)"),
    v4(192, 31, 196, 0, 24, "AS112-v4"),
    v4(192, 52, 193, 0, 24, "AMT"),
    v4(192, 88, 99, 0, 24, "deprecated 6to4 relay anycast"),
    v4(192, 168, 0, 0, 16, "private-use"),
    v4(192, 175, 48, 0, 24, "direct delegation AS112 service"),
    v4(198, 18, 0, 0, 15, "benchmarking"),
    v4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)"),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)"),
    v4(224, 0, 0, 0, 4, "multicast"),
    v4(240, 0, 0, 0, 4, "reserved"),
    v4(255, 255, 255, 255, 32, "limited broadcast"),
];

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8, name: &'static str) -> SpecialRange<Ipv4Addr> {
    SpecialRange {
        network: Ipv4Addr::new(a, b, c, d),
        prefix,
        name,
    }
}

/// IPv6 global unicast (RFC 4291): the only IPv6 addresses that can be an
/// ordinary destination. Everything outside it (the unspecified and
/// loopback addresses, 100::/64 discard, unique-local fc00::/7 with AWS's
/// metadata address fd00:ec2::254, link-local fe80::/10, multicast
/// ff00::/8, and all unassigned space) is refused unless a grant names it;
/// IPv4-mapped and NAT64 addresses are judged by the IPv4 address they
/// carry (see [`embedded_v4`]).
const GLOBAL_UNICAST_V6: SpecialRange<Ipv6Addr> =
    v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3, "global unicast");

/// The IANA IPv6 Special-Purpose Address Registry entries inside global
/// unicast: refused unless a grant names the address. 6to4 (2002::/16)
/// is not here: it is judged by the IPv4 address it carries.
const SPECIAL_V6: &[SpecialRange<Ipv6Addr>] = &[
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments (incl. Teredo 2001::/32)",
    ),
    v6([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    v6(
        [0x2620, 0x004f, 0x8000, 0, 0, 0, 0, 0],
        48,
        "direct delegation AS112 service",
    ),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
];

/// `64:ff9b:1::/48`, local-use NAT64 (RFC 8215): where the IPv4 address
/// sits depends on the operator's prefix length, so it is refused outright.
const LOCAL_NAT64_V6: SpecialRange<Ipv6Addr> = v6(
    [0x0064, 0xff9b, 0x0001, 0, 0, 0, 0, 0],
    48,
    "local-use NAT64",
);

const fn v6(segments: [u16; 8], prefix: u8, name: &'static str) -> SpecialRange<Ipv6Addr> {
    let [a, b, c, d, e, f, g, h] = segments;
    SpecialRange {
        network: Ipv6Addr::new(a, b, c, d, e, f, g, h),
        prefix,
        name,
    }
}

impl SpecialRange<Ipv4Addr> {
    fn contains(&self, address: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(address) & mask == u32::from(self.network) & mask
    }
}

impl SpecialRange<Ipv6Addr> {
    fn contains(&self, address: Ipv6Addr) -> bool {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        u128::from(address) & mask == u128::from(self.network) & mask
    }
}

/// The IPv4 address an IPv6 address stands for, when it is only a way of
/// writing one: IPv4-mapped (`::ffff:a.b.c.d`), the well-known NAT64 prefix
/// (`64:ff9b::a.b.c.d`, RFC 6052) and 6to4 (`2002:AABB:CCDD::/48`, RFC 3056).
/// Such an address reaches what its IPv4 address reaches, so it is judged
/// as that address.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = address.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = address.segments();
    let bits = u128::from(address);
    if segments[..6] == [0x0064, 0xff9b, 0, 0, 0, 0] {
        // `as u32` keeps the low 32 bits: the embedded address.
        return Some(Ipv4Addr::from(bits as u32));
    }
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// Why `address` is not an ordinary public destination, or `None` when it
/// is one (IPv4 outside every special-purpose range; IPv6 global unicast
/// outside every special-purpose range, or carrying such an IPv4 address).
/// This is an allow-list: whatever is not recognised as public is refused.
pub fn special_purpose(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => SPECIAL_V4
            .iter()
            .find(|range| range.contains(v4))
            .map(|range| range.name),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return special_purpose(IpAddr::V4(v4));
            }
            if LOCAL_NAT64_V6.contains(v6) {
                return Some(LOCAL_NAT64_V6.name);
            }
            if !GLOBAL_UNICAST_V6.contains(v6) {
                return Some("not IPv6 global unicast (loopback, unique-local, link-local, multicast or unassigned)");
            }
            SPECIAL_V6
                .iter()
                .find(|range| range.contains(v6))
                .map(|range| range.name)
        }
    }
}

/// Addresses refused unless a grant names them: every address that is not
/// an ordinary public destination ([`special_purpose`]).
pub fn is_guarded_address(address: IpAddr) -> bool {
    special_purpose(address).is_some()
}

/// A secret read from the host's environment: wiped on drop, never printed.
#[derive(Clone)]
struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    fn read(field: String, variable: &str) -> Result<Self, GrantError> {
        read_secret_env(&field, variable)
            .map(|value| Self(Arc::new(Zeroizing::new(value))))
            .map_err(|err| GrantError {
                location: field.trim_start_matches("plugin.grants.").to_string(),
                message: err.to_string(),
            })
    }

    fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The credentials of one grant, read from the environment at load time.
#[derive(Debug, Clone)]
enum Credentials {
    None,
    /// A header set to a fixed secret value (bearer, basic, named header).
    Header {
        name: HeaderName,
        value: HeaderValue,
    },
    Sigv4 {
        region: String,
        service: String,
        access_key_id: Secret,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    },
}

impl Credentials {
    fn read(location: &str, auth: Option<&HttpAuth>) -> Result<Self, GrantError> {
        let field = |name: &str| format!("plugin.grants.{location}.auth.{name}");
        let header_value = |text: String, name: &str| {
            let mut value = HeaderValue::from_str(&text).map_err(|_| GrantError {
                location: format!("{location}.auth.{name}"),
                message: "the variable's value cannot be sent in an HTTP header".to_string(),
            })?;
            value.set_sensitive(true);
            Ok::<_, GrantError>(value)
        };
        Ok(match auth {
            None => Self::None,
            Some(HttpAuth::BearerEnv(variable)) => {
                let token = Secret::read(field("bearer_env"), variable)?;
                Self::Header {
                    name: AUTHORIZATION,
                    value: header_value(format!("Bearer {}", token.expose()), "bearer_env")?,
                }
            }
            Some(HttpAuth::Basic {
                user_env,
                password_env,
            }) => {
                use base64::Engine as _;
                let user = Secret::read(field("basic.user_env"), user_env)?;
                let password = Secret::read(field("basic.password_env"), password_env)?;
                let pair = Zeroizing::new(format!("{}:{}", user.expose(), password.expose()));
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
                Self::Header {
                    name: AUTHORIZATION,
                    value: header_value(format!("Basic {encoded}"), "basic")?,
                }
            }
            Some(HttpAuth::Header { name, value_env }) => {
                let value = Secret::read(field("header.value_env"), value_env)?;
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| GrantError {
                    location: format!("{location}.auth.header.name"),
                    message: "is not a valid HTTP header name".to_string(),
                })?;
                Self::Header {
                    name,
                    value: header_value(value.expose().to_string(), "header.value_env")?,
                }
            }
            Some(HttpAuth::AwsSigv4 {
                region,
                service,
                access_key_id_env,
                secret_access_key_env,
                session_token_env,
            }) => Self::Sigv4 {
                region: region.clone(),
                service: service.clone(),
                access_key_id: Secret::read(
                    field("aws_sigv4.access_key_id_env"),
                    access_key_id_env,
                )?,
                secret_access_key: Secret::read(
                    field("aws_sigv4.secret_access_key_env"),
                    secret_access_key_env,
                )?,
                session_token: session_token_env
                    .as_deref()
                    .map(|variable| Secret::read(field("aws_sigv4.session_token_env"), variable))
                    .transpose()?,
            },
        })
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::None => "no credentials",
            Self::Header { name, .. } if *name == AUTHORIZATION => {
                "Authorization added by the host"
            }
            Self::Header { .. } => "a secret header added by the host",
            Self::Sigv4 { .. } => "AWS SigV4-signed by the host",
        }
    }

    /// Removes what the plugin set for authentication and adds ours.
    fn apply(&self, request: &mut Request<Full<Bytes>>, body: &[u8]) -> Result<(), HttpError> {
        match self {
            Self::None => Ok(()),
            Self::Header { name, value } => {
                let headers = request.headers_mut();
                headers.remove(AUTHORIZATION);
                headers.insert(name.clone(), value.clone());
                Ok(())
            }
            Self::Sigv4 { .. } => self.sign_sigv4(request, body),
        }
    }

    fn sign_sigv4(&self, request: &mut Request<Full<Bytes>>, body: &[u8]) -> Result<(), HttpError> {
        use aws_sigv4::http_request::{
            sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
        };
        use aws_sigv4::http_request::{PercentEncodingMode, UriPathNormalizationMode};
        let Self::Sigv4 {
            region,
            service,
            access_key_id,
            secret_access_key,
            session_token,
        } = self
        else {
            return Ok(());
        };
        for name in SIGV4_HEADERS {
            request.headers_mut().remove(name);
        }
        let identity = aws_credential_types::Credentials::new(
            access_key_id.expose(),
            secret_access_key.expose(),
            session_token
                .as_ref()
                .map(|token| token.expose().to_string()),
            None,
            "sinkhost-grant",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        if service == "s3" {
            // S3 signs the path as sent, encoded once, not normalised.
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|err| {
                HttpError::InternalError(Some(format!("cannot sign the request: {err}")))
            })?
            .into();
        let uri = request.uri().to_string();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method().as_str(),
            &uri,
            headers,
            SignableBody::Bytes(body),
        )
        .map_err(|err| HttpError::InternalError(Some(format!("cannot sign the request: {err}"))))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|err| {
                HttpError::InternalError(Some(format!("cannot sign the request: {err}")))
            })?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        for name in SIGV4_HEADERS {
            if let Some(value) = request.headers_mut().get_mut(name) {
                value.set_sensitive(true);
            }
        }
        Ok(())
    }
}

/// A grant whose credentials would cross the network in clear text (a plain
/// `http://` origin) is refused unless it opts in with
/// `allow_plaintext_credentials` (a loopback test server, a trusted
/// segment). The message names the field.
pub fn check_plaintext_credentials(origin: &Origin, grant: &HttpGrant) -> Result<(), String> {
    if grant.auth.is_some() && origin.is_plaintext() && !grant.allow_plaintext_credentials {
        return Err(format!(
            "credentials would be sent in clear text to {origin}: use an https:// origin, or set `\"allow_plaintext_credentials\": true` in this grant if the network path is trusted (e.g. a loopback server)"
        ));
    }
    Ok(())
}

/// One grant, checked and with its credentials read.
#[derive(Debug)]
struct PreparedOrigin {
    index: usize,
    origin: Origin,
    credentials: Credentials,
    timeout: Duration,
    max_request_body_bytes: u64,
    max_response_body_bytes: u64,
    max_concurrent_requests: u32,
    slots: Arc<Semaphore>,
    allowed_addresses: Vec<IpAddr>,
}

impl PreparedOrigin {
    fn prepare(index: usize, grant: &HttpGrant) -> Result<Self, GrantError> {
        let location = format!("http[{index}]");
        let origin = Origin::parse(&grant.origin).map_err(|message| GrantError {
            location: format!("{location}.origin"),
            message,
        })?;
        check_plaintext_credentials(&origin, grant).map_err(|message| GrantError {
            location: format!("{location}.auth"),
            message,
        })?;
        let slots = usize::try_from(grant.max_concurrent_requests)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .clamp(1, Semaphore::MAX_PERMITS);
        Ok(Self {
            index,
            credentials: Credentials::read(&location, grant.auth.as_ref())?,
            origin,
            timeout: Duration::from_millis(grant.timeout_ms.max(1)),
            max_request_body_bytes: grant.max_request_body_bytes,
            max_response_body_bytes: grant.max_response_body_bytes,
            max_concurrent_requests: grant.max_concurrent_requests,
            slots: Arc::new(Semaphore::new(slots)),
            allowed_addresses: grant.allowed_addresses.clone(),
        })
    }

    /// Whether this grant lets a request reach `address`.
    fn permits_address(&self, address: IpAddr) -> bool {
        let address = canonical_address(address);
        if self
            .allowed_addresses
            .iter()
            .any(|allowed| canonical_address(*allowed) == address)
        {
            return true;
        }
        if let HostPattern::Address(named) = &self.origin.host {
            if canonical_address(*named) == address {
                return true;
            }
        }
        !is_guarded_address(address)
    }

    /// Resolves the target once and checks every address it resolves to.
    async fn resolve(&self, target: &Target) -> Result<SocketAddr, HttpError> {
        let addresses: Vec<SocketAddr> = match &target.host {
            TargetHost::Address(address) => vec![SocketAddr::new(*address, target.port)],
            TargetHost::Name(name) => tokio::net::lookup_host((name.as_str(), target.port))
                .await
                .map_err(|_| HttpError::DnsError {
                    rcode: None,
                    info_code: None,
                })?
                .collect(),
        };
        let first = *addresses.first().ok_or(HttpError::DestinationNotFound)?;
        if let Some(refused) = addresses
            .iter()
            .find(|address| !self.permits_address(address.ip()))
        {
            // The rate-limited refusal line is written by the caller
            // (`Refusals::record`); this one is for debugging the range.
            tracing::debug!(
                origin = %self.origin,
                address = %refused.ip(),
                range = special_purpose(refused.ip()).unwrap_or("-"),
                "plugin request refused: the origin resolves to a special-purpose address the grant does not name (plugin.grants.http[].allowed_addresses)"
            );
            return Err(HttpError::DestinationIpProhibited);
        }
        Ok(first)
    }
}

/// IPv4-mapped IPv6 addresses compare as their IPv4 address.
fn canonical_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The granted origins, checked at load time; shared by every instance.
#[derive(Debug, Clone, Default)]
pub struct Http {
    origins: Arc<Vec<PreparedOrigin>>,
    refusals: super::Refusals,
}

impl Capability for Http {
    type Grant = HttpGrant;
    const NAME: &'static str = "http";

    /// Parses every origin and reads every credential from the environment,
    /// so a missing variable stops the start, naming the grant and the
    /// variable (never its value).
    fn prepare(grants: &[HttpGrant]) -> Result<Self, GrantError> {
        let origins = grants
            .iter()
            .enumerate()
            .map(|(index, grant)| PreparedOrigin::prepare(index, grant))
            .collect::<Result<Vec<_>, _>>()?;
        for (index, granted) in origins.iter().enumerate() {
            if let Some(first) = origins[..index]
                .iter()
                .find(|earlier| earlier.origin == granted.origin)
            {
                return Err(GrantError {
                    location: format!("http[{index}].origin"),
                    message: format!(
                        "{} is already granted by http[{}]: grant each origin once (which grant's credentials and limits apply would be ambiguous)",
                        granted.origin, first.index
                    ),
                });
            }
        }
        Ok(Self {
            origins: Arc::new(origins),
            refusals: super::Refusals::default(),
        })
    }

    /// Nothing to add to the WASI context: `wasi:http` is served by
    /// [`HttpHooks`], and plain sockets stay closed.
    fn apply(&self, _builder: &mut WasiCtxBuilder) -> Result<(), GrantError> {
        Ok(())
    }

    fn describe(&self) -> Vec<String> {
        self.origins
            .iter()
            .map(|granted| {
                format!(
                    "http[{}]: {} ({}, timeout {} ms, bodies up to {}/{} bytes, {} at once)",
                    granted.index,
                    granted.origin,
                    granted.credentials.describe(),
                    granted.timeout.as_millis(),
                    granted.max_request_body_bytes,
                    granted.max_response_body_bytes,
                    granted.max_concurrent_requests,
                )
            })
            .collect()
    }
}

impl Http {
    /// Whether any origin is granted.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The same grants, recording refusals into `refusals`.
    pub fn with_refusals(mut self, refusals: super::Refusals) -> Self {
        self.refusals = refusals;
        self
    }

    /// The `wasi:http` hooks of a new instance.
    pub fn hooks(&self) -> HttpHooks {
        HttpHooks {
            origins: Arc::clone(&self.origins),
            refusals: self.refusals.clone(),
        }
    }

    /// The most specific grant matching `target` (see [`Origin::specificity`]).
    fn find(&self, target: &Target) -> Option<&PreparedOrigin> {
        self.origins
            .iter()
            .filter(|granted| granted.origin.matches(target))
            .max_by_key(|granted| granted.origin.specificity())
    }
}

/// The send hook of one plugin instance: every `wasi:http` request of the
/// plugin goes through [`HttpHooks::send_request`].
#[derive(Debug, Clone, Default)]
pub struct HttpHooks {
    origins: Arc<Vec<PreparedOrigin>>,
    refusals: super::Refusals,
}

impl WasiHttpHooks for HttpHooks {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        _options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> SendFuture {
        let http = Http {
            origins: Arc::clone(&self.origins),
            refusals: self.refusals.clone(),
        };
        Box::new(async move { send(http, request).await })
    }
}

/// Checks, authenticates and sends one plugin request.
async fn send(
    http: Http,
    request: Request<WasiBody>,
) -> Result<(Response<WasiBody>, IoFuture), HttpError> {
    let target = Target::from_uri(request.uri()).ok_or(HttpError::HttpRequestUriInvalid)?;
    let Some(granted) = http.find(&target) else {
        http.refusals.record(
            Http::NAME,
            format!("request to {target}: origin not granted"),
        );
        return Err(HttpError::HttpRequestDenied);
    };
    let deadline = Instant::now() + granted.timeout;
    let slot = Arc::clone(&granted.slots)
        .acquire_owned()
        .await
        .map_err(|_| HttpError::InternalError(Some("request slots closed".to_string())))?;
    let address = within(deadline, granted.resolve(&target), HttpError::DnsTimeout)
        .await?
        .inspect_err(|error| {
            if matches!(error, HttpError::DestinationIpProhibited) {
                http.refusals.record(
                    Http::NAME,
                    format!("request to {target}: resolves to a special-purpose address the grant does not name"),
                );
            }
        })?;
    let (mut request, body) = read_body(request, granted.max_request_body_bytes, deadline).await?;
    granted.credentials.apply(&mut request, &body)?;
    strip_to_origin_form(&mut request)?;
    let stream = within(
        deadline,
        tokio::net::TcpStream::connect(address),
        HttpError::ConnectionTimeout,
    )
    .await?
    .map_err(connect_error)?;
    let response = if target.https {
        let server_name = target
            .server_name()
            .ok_or(HttpError::HttpRequestUriInvalid)?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?);
        let stream = within(
            deadline,
            tls.connect(server_name, stream),
            HttpError::ConnectionTimeout,
        )
        .await?
        .map_err(|_| HttpError::TlsProtocolError)?;
        exchange(stream, request, deadline).await?
    } else {
        exchange(stream, request, deadline).await?
    };
    let response = response.map(|incoming| {
        LimitedBody {
            inner: incoming,
            remaining: granted.max_response_body_bytes,
            limit: granted.max_response_body_bytes,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            _slot: slot,
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_origin(f, self.https, &self.host, self.port)
    }
}

impl std::fmt::Display for TargetHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetHost::Name(name) => f.write_str(name),
            TargetHost::Address(address) => write_address(f, *address),
        }
    }
}

/// Runs `work` until `deadline`, else fails with `on_timeout`.
async fn within<F: Future>(
    deadline: Instant,
    work: F,
    on_timeout: HttpError,
) -> Result<F::Output, HttpError> {
    tokio::time::timeout_at(deadline, work)
        .await
        .map_err(|_| on_timeout)
}

/// Reads the plugin's request body into memory (needed to sign it), up to
/// the grant's limit.
async fn read_body(
    request: Request<WasiBody>,
    limit: u64,
    deadline: Instant,
) -> Result<(Request<Full<Bytes>>, Bytes), HttpError> {
    let (parts, body) = request.into_parts();
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let collected = within(
        deadline,
        http_body_util::Limited::new(body, limit_usize).collect(),
        HttpError::ConnectionWriteTimeout,
    )
    .await?
    .map_err(|err| match err.downcast::<HttpError>() {
        Ok(inner) => *inner,
        Err(_) => HttpError::HttpRequestBodySize(Some(limit)),
    })?;
    let body = collected.to_bytes();
    Ok((Request::from_parts(parts, Full::new(body.clone())), body))
}

/// Keeps only path and query in the request line (a request to an origin
/// server, not to a proxy); the `Host` header carries the authority.
fn strip_to_origin_form<B>(request: &mut Request<B>) -> Result<(), HttpError> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    Ok(())
}

fn connect_error(err: std::io::Error) -> HttpError {
    match err.kind() {
        std::io::ErrorKind::ConnectionRefused => HttpError::ConnectionRefused,
        std::io::ErrorKind::TimedOut => HttpError::ConnectionTimeout,
        _ => HttpError::DestinationUnavailable,
    }
}

/// One HTTP/1.1 exchange on a fresh connection.
async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    deadline: Instant,
) -> Result<Response<hyper::body::Incoming>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = within(
        deadline,
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)),
        HttpError::ConnectionTimeout,
    )
    .await?
    .map_err(|_| HttpError::HttpProtocolError)?;
    // The connection task ends with the exchange (or when the response body
    // is dropped); it cannot outlive the deadline by more than that.
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "plugin HTTP connection ended with an error");
        }
    });
    within(
        deadline,
        sender.send_request(request),
        HttpError::HttpResponseTimeout,
    )
    .await?
    .map_err(|err| {
        if err.is_timeout() {
            HttpError::HttpResponseTimeout
        } else {
            HttpError::HttpResponseIncomplete
        }
    })
}

/// TLS settings for every plugin request: the system's trusted roots.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, HttpError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no trusted root certificates found on this host".to_string());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| {
                    Arc::new(builder.with_root_certificates(roots).with_no_client_auth())
                })
                .map_err(|err| err.to_string())
        })
        .clone()
        .map_err(|message| HttpError::InternalError(Some(message)))
}

/// A response body cut at the grant's size limit and deadline; holds the
/// grant's concurrency slot until the plugin is done with it.
struct LimitedBody {
    inner: hyper::body::Incoming,
    remaining: u64,
    limit: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(HttpError::HttpResponseTimeout)));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |data| data.len() as u64);
                if size > self.remaining {
                    let limit = self.limit;
                    return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(limit)))));
                }
                self.remaining -= size;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => Poll::Ready(Some(Err(HttpError::HttpResponseIncomplete))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Target {
        Target::from_uri(&uri.parse().expect("uri")).expect("target")
    }

    #[test]
    fn origins_parse_with_default_ports_and_refuse_paths() {
        let origin = Origin::parse("https://API.Example.com").expect("valid");
        assert_eq!(origin.to_string(), "https://api.example.com:443");
        assert_eq!(
            Origin::parse("http://127.0.0.1:8333")
                .expect("valid")
                .to_string(),
            "http://127.0.0.1:8333"
        );
        assert_eq!(
            Origin::parse("http://[::1]:80/")
                .expect("valid")
                .to_string(),
            "http://[::1]:80"
        );
        for bad in [
            "api.example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:99999",
            "https://exa mple.com",
            "https://*.",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_match_exactly() {
        let origin = Origin::parse("https://api.example.com").expect("valid");
        assert!(origin.matches(&target("https://api.example.com/v1/x?y=1")));
        assert!(origin.matches(&target("https://API.EXAMPLE.COM:443/")));
        assert!(
            !origin.matches(&target("http://api.example.com/")),
            "scheme"
        );
        assert!(
            !origin.matches(&target("https://api.example.com:8443/")),
            "port"
        );
        assert!(
            !origin.matches(&target("https://evil.api.example.com/")),
            "subdomain"
        );
        assert!(
            !origin.matches(&target("https://api.example.com.evil.net/")),
            "suffix"
        );
        let wildcard = Origin::parse("https://*.example.com").expect("valid");
        assert!(wildcard.matches(&target("https://a.example.com/")));
        assert!(wildcard.matches(&target("https://a.b.example.com/")));
        assert!(!wildcard.matches(&target("https://example.com/")));
        assert!(!wildcard.matches(&target("https://aexample.com/")));
        let address = Origin::parse("http://127.0.0.1:8333").expect("valid");
        assert!(address.matches(&target("http://127.0.0.1:8333/bucket/key")));
        assert!(
            !address.matches(&target("http://localhost:8333/")),
            "a name is not the address"
        );
        assert!(!address.matches(&target("http://127.0.0.1:8334/")));
    }

    #[test]
    fn every_special_purpose_range_is_guarded() {
        // (address, why it must be refused): the first and last address of
        // each range where it matters, the well-known metadata addresses,
        // and IPv6 forms that carry one of them.
        let guarded = [
            ("0.0.0.0", "this network"),
            ("0.255.255.255", "this network"),
            ("10.0.0.1", "private-use"),
            ("10.255.255.255", "private-use"),
            ("100.64.0.0", "CGNAT"),
            ("100.100.100.200", "Alibaba Cloud metadata"),
            ("100.127.255.255", "CGNAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.0.1", "link-local"),
            ("169.254.169.254", "cloud metadata"),
            ("172.16.0.1", "private-use"),
            ("172.31.255.255", "private-use"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.0.170", "NAT64 discovery"),
            ("192.0.2.1", "TEST-NET-1"),
            ("192.31.196.1", "AS112"),
            ("192.52.193.1", "AMT"),
            ("192.88.99.1", "6to4 relay"),
            ("192.168.0.1", "private-use"),
            ("192.168.255.255", "private-use"),
            ("192.175.48.1", "AS112 delegation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "TEST-NET-2"),
            ("203.0.113.9", "TEST-NET-3"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.255", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::127.0.0.1", "IPv4-compatible (deprecated)"),
            ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
            ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
            ("::ffff:10.0.0.1", "IPv4-mapped private"),
            ("::ffff:100.100.100.200", "IPv4-mapped CGNAT"),
            ("64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"),
            ("64:ff9b::7f00:1", "NAT64 of 127.0.0.1"),
            ("64:ff9b::a00:1", "NAT64 of 10.0.0.1"),
            ("64:ff9b:1::808:808", "local-use NAT64"),
            ("100::1", "discard-only"),
            ("2001::1", "Teredo"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:1ff:ffff::1", "IETF protocol assignments"),
            ("2001:db8::1", "documentation"),
            ("2002:7f00:1::1", "6to4 of 127.0.0.1"),
            ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254"),
            ("2002:c0a8:101::1", "6to4 of 192.168.1.1"),
            ("2620:4f:8000::1", "AS112"),
            ("3fff::1", "documentation"),
            ("fc00::1", "unique-local"),
            ("fd00:ec2::254", "AWS metadata (IPv6)"),
            ("fdff:ffff::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("ff02::1", "multicast"),
            ("ff0e::1", "multicast"),
            ("4000::1", "unassigned"),
            ("e000::1", "unassigned"),
        ];
        for (address, why) in guarded {
            let ip: IpAddr = address.parse().expect("ip");
            assert!(is_guarded_address(ip), "{address} ({why}) must be guarded");
        }
        let public = [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "2001:200::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for address in public {
            let ip: IpAddr = address.parse().expect("ip");
            assert_eq!(special_purpose(ip), None, "{address} is public");
        }
    }

    #[test]
    fn embedded_ipv4_is_read_from_mapped_nat64_and_6to4_forms() {
        let cases = [
            ("::ffff:127.0.0.1", Some("127.0.0.1")),
            ("64:ff9b::a9fe:a9fe", Some("169.254.169.254")),
            ("2002:a9fe:a9fe:1::5", Some("169.254.169.254")),
            ("2606:4700::1111", None),
            ("64:ff9b:1::a9fe:a9fe", None),
        ];
        for (v6, v4) in cases {
            let v6: Ipv6Addr = v6.parse().expect("v6");
            let v4: Option<Ipv4Addr> = v4.map(|text| text.parse().expect("v4"));
            assert_eq!(embedded_v4(v6), v4, "{v6}");
        }
    }

    fn grant(json: serde_json::Value) -> PreparedOrigin {
        let grant: HttpGrant = serde_json::from_value(json).expect("grant");
        PreparedOrigin::prepare(0, &grant).expect("prepared")
    }

    #[test]
    fn a_grant_names_the_guarded_addresses_it_allows() {
        let literal = grant(serde_json::json!({"origin": "http://127.0.0.1:9000"}));
        assert!(literal.permits_address("127.0.0.1".parse().expect("ip")));
        assert!(!literal.permits_address("127.0.0.2".parse().expect("ip")));
        assert!(!literal.permits_address("169.254.169.254".parse().expect("ip")));
        let named = grant(
            serde_json::json!({"origin": "http://svc.internal:9000", "allowed_addresses": ["127.0.0.1"]}),
        );
        assert!(named.permits_address("127.0.0.1".parse().expect("ip")));
        assert!(named.permits_address("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!named.permits_address("::1".parse().expect("ip")));
        assert!(
            !named.permits_address("10.0.0.5".parse().expect("ip")),
            "a private address the grant does not name"
        );
        assert!(
            !named.permits_address("64:ff9b::7f00:1".parse().expect("ip")),
            "NAT64 goes to a gateway, not to the named loopback address"
        );
        assert!(named.permits_address("93.184.216.34".parse().expect("ip")));
        let metadata = grant(serde_json::json!({"origin": "http://100.100.100.200"}));
        assert!(
            metadata.permits_address("100.100.100.200".parse().expect("ip")),
            "an operator may name even a metadata address, explicitly"
        );
    }

    fn prepared(grants: serde_json::Value) -> Result<Http, GrantError> {
        let grants: Vec<HttpGrant> = serde_json::from_value(grants).expect("grants");
        Http::prepare(&grants)
    }

    fn authorization_for(http: &Http, uri: &str) -> Option<String> {
        let granted = http.find(&target(uri))?;
        let mut r = request(uri, &[]);
        granted.credentials.apply(&mut r, b"body").expect("applied");
        Some(
            r.headers()
                .get("authorization")
                .map(|value| value.to_str().unwrap_or("?").to_string())
                .unwrap_or_default(),
        )
    }

    #[test]
    fn a_credential_goes_only_to_the_most_specific_grant() {
        std::env::set_var("SINKHOST_TEST_HTTP_WILD", "wild-token");
        std::env::set_var("SINKHOST_TEST_HTTP_EXACT", "exact-token");
        std::env::set_var("SINKHOST_TEST_HTTP_DEEP", "deep-token");
        // The wildcard comes first: order in the config must not matter.
        let http = prepared(serde_json::json!([
            {"origin": "https://*.example.com", "auth": {"bearer_env": "SINKHOST_TEST_HTTP_WILD"}},
            {"origin": "https://api.example.com", "auth": {"bearer_env": "SINKHOST_TEST_HTTP_EXACT"}},
            {"origin": "https://public.example.com"},
            {"origin": "https://*.deep.example.com", "auth": {"bearer_env": "SINKHOST_TEST_HTTP_DEEP"}},
        ]))
        .expect("grants");
        let cases = [
            ("https://api.example.com/v1", "Bearer exact-token"),
            ("https://other.example.com/", "Bearer wild-token"),
            ("https://x.deep.example.com/", "Bearer deep-token"),
            // A grant without credentials: the request gets none, not the
            // wildcard's.
            ("https://public.example.com/", ""),
        ];
        for (uri, expected) in cases {
            assert_eq!(
                authorization_for(&http, uri).as_deref(),
                Some(expected),
                "{uri}"
            );
        }
        // The same, with the exact grants listed first.
        let http = prepared(serde_json::json!([
            {"origin": "https://public.example.com"},
            {"origin": "https://*.example.com", "auth": {"bearer_env": "SINKHOST_TEST_HTTP_WILD"}},
        ]))
        .expect("grants");
        assert_eq!(
            authorization_for(&http, "https://public.example.com/").as_deref(),
            Some("")
        );
        assert_eq!(authorization_for(&http, "https://example.com/"), None);
    }

    #[test]
    fn the_same_origin_granted_twice_is_refused() {
        let err = prepared(serde_json::json!([
            {"origin": "https://api.example.com"},
            {"origin": "https://API.example.com:443/"},
        ]))
        .expect_err("duplicate");
        assert_eq!(err.location, "http[1].origin");
        assert!(err.message.contains("already granted by http[0]"), "{err}");
    }

    #[test]
    fn credentials_over_plain_http_need_the_opt_in() {
        std::env::set_var("SINKHOST_TEST_HTTP_PLAIN", "plain-token");
        let err = prepared(serde_json::json!([
            {"origin": "http://127.0.0.1:9000", "auth": {"bearer_env": "SINKHOST_TEST_HTTP_PLAIN"}},
        ]))
        .expect_err("plaintext credentials");
        assert_eq!(err.location, "http[0].auth");
        assert!(err.message.contains("allow_plaintext_credentials"), "{err}");
        prepared(serde_json::json!([
            {"origin": "http://127.0.0.1:9000", "auth": {"bearer_env": "SINKHOST_TEST_HTTP_PLAIN"},
             "allow_plaintext_credentials": true},
            {"origin": "http://127.0.0.1:9001"},
            {"origin": "https://api.example.com", "auth": {"bearer_env": "SINKHOST_TEST_HTTP_PLAIN"}},
        ]))
        .expect("opted in, no credentials, or https");
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let open = grant(serde_json::json!({"origin": "http://localhost:9"}));
        let refused = open.resolve(&target("http://localhost:9/")).await;
        assert!(
            matches!(refused, Err(HttpError::DestinationIpProhibited)),
            "{refused:?}"
        );
        let allowed = grant(
            serde_json::json!({"origin": "http://localhost:9", "allowed_addresses": ["127.0.0.1", "::1"]}),
        );
        let address = allowed
            .resolve(&target("http://localhost:9/"))
            .await
            .expect("allowed");
        assert!(address.ip().is_loopback());
    }

    #[test]
    fn missing_credentials_name_the_grant_and_variable_only() {
        let grant: HttpGrant = serde_json::from_value(serde_json::json!({
            "origin": "https://api.example.com",
            "auth": {"bearer_env": "SINKHOST_TEST_HTTP_UNSET_TOKEN"}
        }))
        .expect("grant");
        let err = Http::prepare(&[grant]).expect_err("unset variable");
        let text = err.to_string();
        assert!(text.contains("http[0].auth.bearer_env"), "{text}");
        assert!(text.contains("SINKHOST_TEST_HTTP_UNSET_TOKEN"), "{text}");
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
        let mut builder = Request::builder().method("PUT").uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(Full::new(Bytes::from_static(b"body")))
            .expect("request")
    }

    #[test]
    fn credentials_replace_what_the_plugin_set_and_stay_hidden() {
        std::env::set_var("SINKHOST_TEST_HTTP_TOKEN", "s3cr3t-token");
        std::env::set_var("SINKHOST_TEST_HTTP_USER", "alice");
        std::env::set_var("SINKHOST_TEST_HTTP_PASSWORD", "pw");
        let bearer = Credentials::read(
            "http[0]",
            Some(&HttpAuth::BearerEnv("SINKHOST_TEST_HTTP_TOKEN".into())),
        )
        .expect("bearer");
        let mut r = request(
            "https://api.example.com/x",
            &[("authorization", "Bearer forged")],
        );
        bearer.apply(&mut r, b"body").expect("applied");
        assert_eq!(r.headers()["authorization"], "Bearer s3cr3t-token");
        assert_eq!(r.headers().get_all("authorization").iter().count(), 1);
        assert!(r.headers()["authorization"].is_sensitive());
        assert!(
            !format!("{bearer:?}").contains("s3cr3t"),
            "Debug never shows the secret"
        );

        let basic = Credentials::read(
            "http[0]",
            Some(&HttpAuth::Basic {
                user_env: "SINKHOST_TEST_HTTP_USER".into(),
                password_env: "SINKHOST_TEST_HTTP_PASSWORD".into(),
            }),
        )
        .expect("basic");
        let mut r = request("https://api.example.com/x", &[]);
        basic.apply(&mut r, b"body").expect("applied");
        assert_eq!(r.headers()["authorization"], "Basic YWxpY2U6cHc=");

        let header = Credentials::read(
            "http[0]",
            Some(&HttpAuth::Header {
                name: "X-Api-Key".into(),
                value_env: "SINKHOST_TEST_HTTP_TOKEN".into(),
            }),
        )
        .expect("header");
        let mut r = request(
            "https://api.example.com/x",
            &[("x-api-key", "forged"), ("authorization", "forged")],
        );
        header.apply(&mut r, b"body").expect("applied");
        assert_eq!(r.headers()["x-api-key"], "s3cr3t-token");
        assert!(r.headers().get("authorization").is_none());
    }

    #[test]
    fn sigv4_signs_the_request_and_its_body() {
        std::env::set_var("SINKHOST_TEST_AWS_KEY", "AKIDEXAMPLE");
        std::env::set_var(
            "SINKHOST_TEST_AWS_SECRET",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        );
        let sigv4 = Credentials::read(
            "http[0]",
            Some(&HttpAuth::AwsSigv4 {
                region: "us-east-1".into(),
                service: "s3".into(),
                access_key_id_env: "SINKHOST_TEST_AWS_KEY".into(),
                secret_access_key_env: "SINKHOST_TEST_AWS_SECRET".into(),
                session_token_env: None,
            }),
        )
        .expect("sigv4");
        let mut r = request(
            "http://127.0.0.1:8333/bucket/a%20key.json",
            &[
                ("host", "127.0.0.1:8333"),
                ("authorization", "forged"),
                ("x-amz-date", "19990101T000000Z"),
            ],
        );
        sigv4.apply(&mut r, b"body").expect("signed");
        let authorization = r.headers()["authorization"].to_str().expect("ascii");
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{authorization}"
        );
        assert!(
            authorization.contains("/us-east-1/s3/aws4_request"),
            "{authorization}"
        );
        assert!(
            authorization.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"),
            "{authorization}"
        );
        // sha256("body")
        assert_eq!(
            r.headers()["x-amz-content-sha256"],
            "230d8358dc8e8890b4c58deeb62912ee2f20357ae92a5cc861b98e68fe31acb5"
        );
        assert_ne!(r.headers()["x-amz-date"], "19990101T000000Z");
        assert!(!format!("{sigv4:?}").contains("EXAMPLEKEY"));
    }
}
