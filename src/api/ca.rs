//! The local certificate authority of the forward proxy's `--mitm` mode: a CA key and
//! certificate kept in a directory (created on first use, the key mode 0600), and one
//! leaf certificate per host, signed on demand and cached.
//!
//! Clients trust the CA once (`mummer ca export`), then the proxy can end their TLS
//! for any host and send the request on with the session's own TLS fingerprint.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use boring::asn1::Asn1Time;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::ssl::{SslAcceptor, SslMethod};
use boring::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use boring::x509::{X509Builder, X509Name, X509NameRef, X509};
use lru::LruCache;

use crate::error::{Error, Result};

/// Leaf acceptors kept (one per host the proxy has terminated TLS for).
const LEAF_CACHE: usize = 1024;

/// A CA that signs the proxy's per-host certificates.
pub struct LocalCa {
    cert: X509,
    key: PKey<Private>,
    leaves: Mutex<LruCache<String, Arc<SslAcceptor>>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

/// The default CA directory: `$MUMMER_HOME/ca`, else `~/.mummer/ca`.
pub fn default_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("MUMMER_HOME") {
        return PathBuf::from(home).join("ca");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".mummer").join("ca")
}

fn tls_err(what: &str) -> impl Fn(boring::error::ErrorStack) -> Error + '_ {
    move |e| Error::invalid_input(format!("{what}: {e}"))
}

impl LocalCa {
    /// The CA in `dir` (`ca.pem`, `ca.key`); a new one is generated and written when the
    /// directory has none.
    ///
    /// # Errors
    ///
    /// An unreadable or foreign file (named), or a directory that cannot be written.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        if cert_path.exists() || key_path.exists() {
            let read = |p: &Path| {
                crate::files::read_capped(p, crate::files::MAX_CONFIG_FILE_BYTES)
                    .map_err(|e| Error::io(format!("reading the CA file {}", p.display()), e))
            };
            let cert = X509::from_pem(&read(&cert_path)?).map_err(|e| {
                Error::invalid_input(format!(
                    "{}: not a PEM certificate ({e}); remove the directory to make a new CA",
                    cert_path.display()
                ))
            })?;
            let key = PKey::private_key_from_pem(&read(&key_path)?).map_err(|e| {
                Error::invalid_input(format!(
                    "{}: not a PEM private key ({e}); remove the directory to make a new CA",
                    key_path.display()
                ))
            })?;
            if !cert
                .public_key()
                .map(|p| p.public_eq(&key))
                .unwrap_or(false)
            {
                return Err(Error::invalid_input(format!(
                    "{} and {} do not belong together; remove the directory to make a new CA",
                    cert_path.display(),
                    key_path.display()
                )));
            }
            return Ok(LocalCa::from_parts(cert, key));
        }
        let ca = LocalCa::generate()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating the CA directory {}", dir.display()), e))?;
        let key_pem = ca
            .key
            .private_key_to_pem_pkcs8()
            .map_err(tls_err("encoding the CA key"))?;
        write_private(&key_path, &key_pem)?;
        std::fs::write(&cert_path, ca.cert_pem())
            .map_err(|e| Error::io(format!("writing {}", cert_path.display()), e))?;
        Ok(ca)
    }

    /// A fresh CA in memory (tests, or a proxy whose clients are told each run).
    ///
    /// # Errors
    ///
    /// BoringSSL failing to generate or sign (it does not in practice).
    pub fn generate() -> Result<LocalCa> {
        let build = || -> std::result::Result<LocalCa, boring::error::ErrorStack> {
            let key = new_key()?;
            let mut name = X509Name::builder()?;
            name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "mummer")?;
            name.append_entry_by_nid(
                Nid::COMMONNAME,
                &format!("mummer local proxy CA {:08x}", rand::random::<u32>()),
            )?;
            let name = name.build();
            let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
            let mut b = certificate(&name, &name, &key, &from, &until)?;
            let basic = BasicConstraints::new().critical().ca().build()?;
            b.append_extension(&basic)?;
            let usage = KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?;
            b.append_extension(&usage)?;
            let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
            b.append_extension(&ski)?;
            b.sign(&key, MessageDigest::sha256())?;
            Ok(LocalCa::from_parts(b.build(), key))
        };
        build().map_err(tls_err("generating the local CA"))
    }

    fn from_parts(cert: X509, key: PKey<Private>) -> LocalCa {
        LocalCa {
            cert,
            key,
            leaves: Mutex::new(LruCache::new(
                NonZeroUsize::new(LEAF_CACHE).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The CA certificate as PEM, for clients to trust.
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap_or_default()
    }

    /// A TLS acceptor presenting a certificate for `host` signed by this CA (HTTP/1.1
    /// by ALPN). Cached per host.
    ///
    /// # Errors
    ///
    /// BoringSSL failing to sign (it does not in practice).
    pub fn acceptor_for(&self, host: &str) -> Result<Arc<SslAcceptor>> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if let Some(hit) = self.leaves.lock().map_err(poisoned)?.get(&host) {
            return Ok(hit.clone());
        }
        let acceptor = Arc::new(
            self.leaf_acceptor(&host)
                .map_err(tls_err("signing a proxy certificate"))?,
        );
        self.leaves
            .lock()
            .map_err(poisoned)?
            .put(host, acceptor.clone());
        Ok(acceptor)
    }

    fn leaf_acceptor(
        &self,
        host: &str,
    ) -> std::result::Result<SslAcceptor, boring::error::ErrorStack> {
        let key = new_key()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, host)?;
        let name = name.build();
        // A day of slack for clocks that are behind.
        let from = Asn1Time::from_unix(unix_now() - 86_400)?;
        let until = Asn1Time::days_from_now(397)?;
        let mut b = certificate(&name, self.cert.subject_name(), &key, &from, &until)?;
        let basic = BasicConstraints::new().build()?;
        b.append_extension(&basic)?;
        let usage = KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()?;
        b.append_extension(&usage)?;
        let eku = ExtendedKeyUsage::new().server_auth().build()?;
        b.append_extension(&eku)?;
        let mut san = SubjectAlternativeName::new();
        if host.parse::<std::net::IpAddr>().is_ok() {
            san.ip(host);
        } else {
            san.dns(host);
        }
        let ext = san.build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(&ext)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(true)
            .build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(&aki)?;
        b.sign(&self.key, MessageDigest::sha256())?;
        let leaf = b.build();

        let mut a = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
        a.set_certificate(&leaf)?;
        a.add_extra_chain_cert(self.cert.clone())?;
        a.set_private_key(&key)?;
        a.set_alpn_select_callback(|_, client| {
            crate::inspect::cert::select_alpn(&[b"http/1.1"], client)
        });
        Ok(a.build())
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::invalid_input("the proxy certificate cache lock is poisoned")
}

fn new_key() -> std::result::Result<PKey<Private>, boring::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

/// An X.509 v3 builder with a random 120-bit serial, the names, `key`'s public half and
/// the validity set; extensions and the signature are the caller's.
fn certificate(
    subject: &X509NameRef,
    issuer: &X509NameRef,
    key: &PKey<Private>,
    from: &Asn1Time,
    until: &Asn1Time,
) -> std::result::Result<X509Builder, boring::error::ErrorStack> {
    let mut serial = boring::bn::BigNum::new()?;
    serial.rand(120, boring::bn::MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(subject)?;
    b.set_issuer_name(issuer)?;
    b.set_pubkey(key)?;
    b.set_not_before(from)?;
    b.set_not_after(until)?;
    Ok(b)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Writes `bytes` to a new file only the owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_then_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = LocalCa::load_or_create(dir.path()).expect("create");
        let again = LocalCa::load_or_create(dir.path()).expect("load");
        assert_eq!(first.cert_pem(), again.cert_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the CA key is private");
        }
        std::fs::write(dir.path().join("ca.pem"), b"garbage").expect("write");
        let e = LocalCa::load_or_create(dir.path()).expect_err("corrupt");
        assert!(e.to_string().contains("ca.pem"), "{e}");
    }

    #[test]
    fn leaves_are_cached_per_host() {
        let ca = LocalCa::generate().expect("ca");
        let a = ca.acceptor_for("shop.test").expect("leaf");
        let b = ca.acceptor_for("SHOP.test").expect("leaf");
        assert!(Arc::ptr_eq(&a, &b));
        ca.acceptor_for("127.0.0.1").expect("ip leaf");
    }
}
