//! TLS both ends share: PEM loading, the rustls settings (the `ring`
//! provider, chosen explicitly: aws-lc-rs breaks the ARM cross builds), and
//! TLS failures turned into sentences that say what to do.

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS settings: {0}")]
    Settings(#[from] rustls::Error),
    #[error("CA {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
}

/// The one crypto provider: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(path, format!("cannot read it: {e}")))
}

/// Every certificate in a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            path,
            "holds no certificate (expected `-----BEGIN CERTIFICATE-----`)",
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| file_error(path, format!("holds no usable private key: {e}")))
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in load_certs(ca)? {
        store.add(c).map_err(|e| TlsError::Ca {
            path: ca.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The agent's side: trust only `ca`, prove who we are with `cert`/`key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let p = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), p.clone())
        .build()
        .map_err(|e| TlsError::Ca {
            path: ca.to_path_buf(),
            reason: e.to_string(),
        })?;
    let config = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)?;
    Ok(Arc::new(config))
}

/// The upstream's side: a client certificate from `ca` is required.
pub fn server_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let p = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), p.clone())
        .build()
        .map_err(|e| TlsError::Ca {
            path: ca.to_path_buf(),
            reason: e.to_string(),
        })?;
    let config = ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)?;
    Ok(Arc::new(config))
}

/// The rustls error inside an I/O error, if that is what it is.
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn when(t: rustls_pki_types::UnixTime) -> String {
    crate::clock::format_ms((t.as_secs() as i64).saturating_mul(1000))
}

/// What the agent tells a technician when the TLS handshake with the
/// upstream at `url` fails: the cause and what to do. `ca` and `cert` are
/// the configured files; `synced` whether this machine's clock is synchronised.
pub fn explain_client(
    e: &rustls::Error,
    url: &str,
    ca: &Path,
    cert: &Path,
    synced: bool,
) -> String {
    let clock = if synced {
        "this machine's clock is synchronised"
    } else {
        "this machine's clock is NOT synchronised (check `timedatectl`)"
    };
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the upstream at {url} shows a certificate not signed by the CA in {}: \
                 check that `ca` in [upstream] is the site's ca.pem and that the hub's certificate \
                 was issued from it (`sitelink pki issue-hub`)",
                ca.display()
            ),
            CertificateError::NotValidYet => format!(
                "the upstream's certificate at {url} is not valid yet by this machine's clock: \
                 the clock is probably wrong; {clock}. Collection goes on; the uplink retries"
            ),
            CertificateError::NotValidYetContext { time, not_before } => format!(
                "the upstream's certificate at {url} is valid from {} but this machine's clock says {}: \
                 the clock is wrong; {clock}. Collection goes on; the uplink retries",
                when(*not_before),
                when(*time)
            ),
            CertificateError::Expired => format!(
                "the upstream's certificate at {url} has expired ({clock}): renew it on the hub \
                 with `sitelink pki issue-hub --force`"
            ),
            CertificateError::ExpiredContext { time, not_after } => format!(
                "the upstream's certificate at {url} expired at {} (this machine's clock says {}; {clock}): \
                 renew it on the hub with `sitelink pki issue-hub --force`",
                when(*not_after),
                when(*time)
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the upstream's certificate is not for the host in {url}: issue the hub's \
                     certificate with that name (`sitelink pki issue-hub --name HOST`) or use a name it has"
                )
            }
            other => format!("the upstream's certificate at {url} is not acceptable: {other:?}"),
        },
        rustls::Error::AlertReceived(a) => match a {
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRequired
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError => format!(
                "the upstream at {url} refused this agent's certificate {} ({a:?}): check that it was \
                 issued by the site CA (`sitelink pki issue-agent`), has not expired, and belongs to this agent",
                cert.display()
            ),
            other => format!("the upstream at {url} ended the TLS handshake: {other:?}"),
        },
        other => format!("TLS with the upstream at {url} failed: {other}"),
    }
}

/// What the hub logs when an agent's handshake fails.
pub fn explain_server(e: &rustls::Error) -> String {
    match e {
        rustls::Error::NoCertificatesPresented => {
            "the client showed no certificate (every agent needs one from the site CA)".to_string()
        }
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                "the client's certificate is not from the site CA".to_string()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!(
                    "the client's certificate has expired ({c:?}): issue a new one with `sitelink pki issue-agent --force`"
                )
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!(
                    "the client's certificate is not valid yet ({c:?}): check this machine's clock"
                )
            }
            other => format!("the client's certificate is not acceptable: {other:?}"),
        },
        other => format!("TLS handshake failed: {other}"),
    }
}
