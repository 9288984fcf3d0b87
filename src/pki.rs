//! The site PKI (`sitelink pki`): a site CA, a certificate per agent with the
//! agent id as its subject's common name (the hub reads who connects from
//! it), and the hub's certificate with its names. PEM files; keys readable by
//! their owner only; nothing overwritten without `force`.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const HUB_CERT: &str = "hub.pem";
pub const HUB_KEY: &str = "hub.key";

const DAY: Duration = Duration::from_secs(86_400);
/// The site CA outlives the devices it vouches for.
const CA_DAYS: u64 = 20 * 365;
const LEAF_DAYS: u64 = 10 * 365;
/// Certificates start an hour early, for machines whose clock is a little behind.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{0} exists already: pass --force to replace it")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no site CA in {0}: create one first with `sitelink pki init --dir {0}`")]
    NoCa(PathBuf),
    #[error("{path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("invalid agent id {id:?}: it {problem} (use 1 to 64 letters, digits, `.`, `_` or `-`)")]
    BadId { id: String, problem: String },
    #[error("invalid hub name {0:?}: give a DNS name (hub.example.com) or an IP address")]
    BadName(String),
    #[error(
        "a hub certificate needs at least one --name (the DNS name or IP address agents connect to)"
    )]
    NoName,
    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A certificate's validity period.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago for `days` days.
    pub fn days(days: u64) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - BACKDATE,
            not_after: now + DAY * days as u32,
        }
    }

    fn apply(&self, p: &mut CertificateParams) {
        p.not_before = self.not_before.into();
        p.not_after = self.not_after.into();
    }
}

fn agent_cert(id: &str) -> String {
    format!("agent-{id}.pem")
}

fn agent_key(id: &str) -> String {
    format!("agent-{id}.key")
}

/// The certificate and key files of agent `id` in `dir`.
pub fn agent_files(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    (dir.join(agent_cert(id)), dir.join(agent_key(id)))
}

fn check_free(paths: &[&Path], force: bool) -> Result<(), PkiError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) if !force => Err(PkiError::Exists(p.to_path_buf())),
        _ => Ok(()),
    }
}

/// Writes `text` to `path` atomically with `mode` (0600 for keys).
fn write(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive, as RFC 5280 wants.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// `sitelink pki init`: a new site CA in `dir`. Returns the files written.
pub fn init(dir: &Path, force: bool) -> Result<Vec<PathBuf>, PkiError> {
    init_valid(dir, force, Validity::days(CA_DAYS))
}

/// `init` with a chosen validity (tests make expired and future CAs).
pub fn init_valid(dir: &Path, force: bool, validity: Validity) -> Result<Vec<PathBuf>, PkiError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    check_free(&[&cert, &key], force)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = name("sitelink site CA");
    // It signs agents and hubs, never another CA.
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(random_serial());
    validity.apply(&mut p);
    let k = KeyPair::generate()?;
    let c = p.self_signed(&k)?;
    write(&key, &k.serialize_pem(), 0o600)?;
    write(&cert, &c.pem(), 0o644)?;
    Ok(vec![cert, key])
}

fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let (cert, key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if !cert.exists() || !key.exists() {
        return Err(PkiError::NoCa(dir.to_path_buf()));
    }
    let unusable = |path: &Path, e: rcgen::Error| PkiError::Unusable {
        path: path.to_path_buf(),
        reason: format!("not a usable PEM file ({e})"),
    };
    let key_pem = std::fs::read_to_string(&key).map_err(io(&key))?;
    let k = KeyPair::from_pem(&key_pem).map_err(|e| unusable(&key, e))?;
    let cert_pem = std::fs::read_to_string(&cert).map_err(io(&cert))?;
    Issuer::from_ca_cert_pem(&cert_pem, k).map_err(|e| unusable(&cert, e))
}

/// `sitelink pki issue-agent`: a client certificate for agent `id`.
pub fn issue_agent(dir: &Path, id: &str, force: bool) -> Result<Vec<PathBuf>, PkiError> {
    issue_agent_valid(dir, id, force, Validity::days(LEAF_DAYS))
}

/// `issue_agent` with a chosen validity (tests make expired certificates).
pub fn issue_agent_valid(
    dir: &Path,
    id: &str,
    force: bool,
    validity: Validity,
) -> Result<Vec<PathBuf>, PkiError> {
    if let Some(problem) = crate::config::name_problem(id) {
        return Err(PkiError::BadId {
            id: id.to_string(),
            problem,
        });
    }
    let (cert, key) = agent_files(dir, id);
    check_free(&[&cert, &key], force)?;
    let ca = load_ca(dir)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = name(id);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(random_serial());
    validity.apply(&mut p);
    let k = KeyPair::generate()?;
    let c = p.signed_by(&k, &ca)?;
    write(&key, &k.serialize_pem(), 0o600)?;
    write(&cert, &c.pem(), 0o644)?;
    Ok(vec![cert, key])
}

/// `sitelink pki issue-hub`: the hub's server certificate, valid for `names`
/// (DNS names or IP addresses).
pub fn issue_hub(dir: &Path, names: &[String], force: bool) -> Result<Vec<PathBuf>, PkiError> {
    issue_hub_valid(dir, names, force, Validity::days(LEAF_DAYS))
}

/// `issue_hub` with a chosen validity (tests make a certificate that is
/// not valid yet, as an agent with a wrong clock sees it).
pub fn issue_hub_valid(
    dir: &Path,
    names: &[String],
    force: bool,
    validity: Validity,
) -> Result<Vec<PathBuf>, PkiError> {
    let Some(first) = names.first() else {
        return Err(PkiError::NoName);
    };
    let mut sans = Vec::new();
    for n in names {
        sans.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                let dns = rustls_pki_types::DnsName::try_from(n.as_str())
                    .map_err(|_| PkiError::BadName(n.clone()))?;
                SanType::DnsName(
                    dns.as_ref()
                        .try_into()
                        .map_err(|_| PkiError::BadName(n.clone()))?,
                )
            }
        });
    }
    let (cert, key) = (dir.join(HUB_CERT), dir.join(HUB_KEY));
    check_free(&[&cert, &key], force)?;
    let ca = load_ca(dir)?;
    let mut p = CertificateParams::default();
    p.distinguished_name = name(first);
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.serial_number = Some(random_serial());
    validity.apply(&mut p);
    let k = KeyPair::generate()?;
    let c = p.signed_by(&k, &ca)?;
    write(&key, &k.serialize_pem(), 0o600)?;
    write(&cert, &c.pem(), 0o644)?;
    Ok(vec![cert, key])
}

/// The agent id a client certificate (DER) was issued for: its subject's
/// common name.
pub fn agent_id_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_issue_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        assert!(matches!(
            issue_agent(d, "site-01", false),
            Err(PkiError::NoCa(_))
        ));
        init(d, false).expect("init");
        assert!(matches!(init(d, false), Err(PkiError::Exists(_))));
        init(d, true).expect("forced");
        let files = issue_agent(d, "site-01", false).expect("agent");
        assert_eq!(
            files,
            [d.join("agent-site-01.pem"), d.join("agent-site-01.key")]
        );
        let mode = std::fs::metadata(&files[1])
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            issue_agent(d, "site-01", false),
            Err(PkiError::Exists(_))
        ));
        assert!(matches!(
            issue_agent(d, "bad id", false),
            Err(PkiError::BadId { .. })
        ));
        issue_hub(d, &["hub.example.com".into(), "127.0.0.1".into()], false).expect("hub");
        assert!(matches!(
            issue_hub(d, &["not a name!".into()], true),
            Err(PkiError::BadName(_))
        ));

        let pem = std::fs::read(&files[0]).expect("cert");
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("PEM");
        assert_eq!(agent_id_of(&der).as_deref(), Some("site-01"));
    }

    use rustls_pki_types::pem::PemObject;
}
