//! TLS for [`RedisStore`](super::RedisStore) (the `redis-tls` feature): the root and client
//! certificates a builder was given, checked before anything connects, and the handshake
//! failures told apart from a server that cannot be reached.

use super::{ConnectError, ConnectErrorKind};
use redis::{ClientTlsConfig, TlsCertificates};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError};
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// The TLS options of a [`RedisStoreBuilder`](super::RedisStoreBuilder), as given: PEM
/// bytes, read at [`connect`](super::RedisStoreBuilder::connect).
#[derive(Clone, Default)]
pub(super) struct TlsOptions {
    /// The CAs to trust instead of the system's.
    pub(super) roots: Option<Vec<u8>>,
    /// The client's certificate chain and private key.
    pub(super) client: Option<(Vec<u8>, Vec<u8>)>,
}

/// Never prints a key, nor a certificate.
impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = |set: bool| if set { "<given>" } else { "none" };
        f.debug_struct("TlsOptions")
            .field("root_certificates", &given(self.roots.is_some()))
            .field("client_certificate", &given(self.client.is_some()))
            .finish()
    }
}

impl TlsOptions {
    /// Whether any option was given: then every URL must be `rediss://`.
    pub(super) fn is_set(&self) -> bool {
        self.roots.is_some() || self.client.is_some()
    }

    /// The certificates for the redis client, each PEM checked for what it must hold, and
    /// the client key against its certificate: a mistake is an error here, not a handshake
    /// that fails on every connection later.
    pub(super) fn certificates(&self) -> Result<TlsCertificates, ConnectError> {
        if let Some(pem) = &self.roots {
            let mut store = rustls::RootCertStore::empty();
            for cert in certificates(pem, "root certificates")? {
                store.add(cert).map_err(|err| {
                    invalid(
                        "a TLS root certificate is not a CA certificate that rustls can use",
                        err,
                    )
                })?;
            }
        }
        if let Some((chain, key)) = &self.client {
            let chain = certificates(chain, "client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|err| {
                invalid(
                    "the TLS client key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    err,
                )
            })?;
            let key = crypto_provider()
                .key_provider
                .load_private_key(key)
                .map_err(|err| {
                    invalid(
                        "the TLS client key is not a key rustls can sign with (RSA, ECDSA or Ed25519)",
                        err,
                    )
                })?;
            match rustls::sign::CertifiedKey::new(chain, key).keys_match() {
                // A key that cannot tell its public half is checked by the server instead.
                Ok(())
                | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
                Err(err) => {
                    return Err(invalid(
                        "the TLS client key does not go with the client certificate",
                        err,
                    ))
                }
            }
        }
        Ok(TlsCertificates {
            client_tls: self
                .client
                .as_ref()
                .map(|(client_cert, client_key)| ClientTlsConfig {
                    client_cert: client_cert.clone(),
                    client_key: client_key.clone(),
                }),
            root_cert: self.roots.clone(),
        })
    }
}

/// `client`, for a `rediss://` URL: with `certificates` if any were given (a URL that is
/// not `rediss://` is then a mistake), and with the process's rustls cryptography chosen.
pub(super) fn configured(
    client: redis::Client,
    certificates: Option<&TlsCertificates>,
) -> Result<redis::Client, ConnectError> {
    let info = client.get_connection_info();
    if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return match certificates {
            Some(_) => Err(ConnectError::new(
                ConnectErrorKind::InvalidConfig,
                "TLS certificates were given, but a Redis URL is not `rediss://`: write `rediss://host:port` for every node",
            )),
            None => Ok(client),
        };
    }
    crypto_provider();
    match certificates {
        Some(certificates) => redis::Client::build_with_tls(info.clone(), certificates.clone())
            .map_err(|err| invalid("the TLS certificates could not be used", err)),
        None => Ok(client),
    }
}

/// The certificates of a PEM, at least one: text without any `CERTIFICATE` block (a
/// path, DER bytes, an empty file) would otherwise be read as no certificate at all.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(format!("the TLS {what} are not valid PEM"), err))?;
    if certs.is_empty() {
        return Err(ConnectError::new(
            ConnectErrorKind::InvalidConfig,
            format!(
                "the TLS {what} hold no certificate: give the PEM text, with its `-----BEGIN CERTIFICATE-----` blocks"
            ),
        ));
    }
    Ok(certs)
}

fn invalid(
    message: impl Into<String>,
    source: impl Into<Box<dyn StdError + Send + Sync>>,
) -> ConnectError {
    ConnectError::caused_by(ConnectErrorKind::InvalidConfig, message, source)
}

/// The process's rustls cryptography, after installing ring's if the process chose none.
///
/// The redis crate builds its TLS configurations with the process default, which rustls
/// picks by itself only when exactly one provider is compiled in, and panics otherwise:
/// an application whose other dependencies bring aws-lc-rs would see every connection
/// panic. One that installed a provider of its own keeps it.
pub(super) fn crypto_provider() -> Arc<CryptoProvider> {
    if let Some(provider) = CryptoProvider::get_default() {
        return Arc::clone(provider);
    }
    // Another thread may install one meanwhile: whichever came first is the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default().map_or_else(
        || Arc::new(rustls::crypto::ring::default_provider()),
        Arc::clone,
    )
}

/// What a failure of the TLS handshake (or of the first read after it, when the server
/// refuses a client certificate under TLS 1.3) says to change, if `err` is one.
pub(super) fn handshake_problem(err: &redis::RedisError) -> Option<&'static str> {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(current) = cause {
        if let Some(tls) = rustls_error(current) {
            return Some(problem(tls));
        }
        cause = current.source();
    }
    None
}

/// The rustls error that `err` is or wraps: the redis crate keeps an I/O error in an
/// `Arc`, and an I/O error hides its inner error from `source()`.
fn rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(shared) = err.downcast_ref::<Arc<dyn StdError + Send + Sync>>() {
        return rustls_error(&**shared);
    }
    err.downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .and_then(|inner| rustls_error(inner))
}

fn problem(err: &rustls::Error) -> &'static str {
    match err {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => {
            "the Redis server's certificate is not signed by a CA this store trusts; give its CA with `RedisStoreBuilder::tls_root_certificates`"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the Redis server's certificate is not for the host name or address in the URL",
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "the Redis server's certificate has expired or is not valid yet",
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            "the Redis server's certificate was not accepted"
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the Redis server requires a client certificate; give one with `RedisStoreBuilder::tls_client_certificate`"
        }
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied,
        ) => "the Redis server refused this store's client certificate",
        _ => "the TLS handshake with the Redis server failed",
    }
}
