//! TLS client settings for the database drivers that take a rustls
//! configuration (PostgreSQL): which roots are trusted and how much of the
//! server's certificate is checked, per [`SqlTlsMode`]. The ring provider,
//! as everywhere in the host.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::endpoint::Tls;
use crate::config::SqlTlsMode;

/// The rustls configuration of `tls`, or `None` for `disable`. Errors name
/// the CA file, never a credential.
pub fn client_config(tls: &Tls) -> Result<Option<Arc<ClientConfig>>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("cannot set up TLS: {err}"))?;
    let config = match tls.mode {
        SqlTlsMode::Disable => return Ok(None),
        SqlTlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth(),
        SqlTlsMode::VerifyCa | SqlTlsMode::VerifyFull => {
            let roots = Arc::new(roots(tls)?);
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|err| format!("cannot set up TLS verification: {err}"))?;
            if tls.mode == SqlTlsMode::VerifyCa {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
                    .with_no_client_auth()
            } else {
                builder.with_webpki_verifier(verifier).with_no_client_auth()
            }
        }
    };
    Ok(Some(Arc::new(config)))
}

/// The CA file's certificates, or the system's roots without one.
fn roots(tls: &Tls) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let shown = path.display();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|err| format!("tls.ca_file `{shown}`: cannot read it ({err})"))?;
            for certificate in certificates {
                let certificate = certificate.map_err(|err| {
                    format!("tls.ca_file `{shown}`: not PEM certificates ({err})")
                })?;
                roots
                    .add(certificate)
                    .map_err(|err| format!("tls.ca_file `{shown}`: {err}"))?;
            }
            if roots.is_empty() {
                return Err(format!("tls.ca_file `{shown}` holds no certificate"));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(String::from(
                    "no system CA certificates found; give tls.ca_file",
                ));
            }
        }
    }
    Ok(roots)
}

/// `verify-ca`: the chain must verify; the name may differ.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`: encrypted, any certificate (the handshake's signatures are
/// still checked, so the session key belongs to whoever holds that key).
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disable_needs_no_configuration_and_a_missing_ca_file_is_named() {
        let disabled = Tls {
            mode: SqlTlsMode::Disable,
            ca_file: None,
        };
        assert!(client_config(&disabled).expect("disable").is_none());
        let required = Tls {
            mode: SqlTlsMode::Require,
            ca_file: None,
        };
        assert!(client_config(&required).expect("require").is_some());
        let missing = Tls {
            mode: SqlTlsMode::VerifyFull,
            ca_file: Some("/nonexistent/ca.pem".into()),
        };
        let error = client_config(&missing).err().expect("missing");
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
