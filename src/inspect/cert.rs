//! Self-signed certificates and TLS acceptors for loopback servers: the inspector, the
//! test servers and the benchmark server all get their certificate here.
//!
//! The certificate is an ECDSA P-256 leaf, valid for 30 days, naming `localhost`,
//! `127.0.0.1`, `::1` and whatever names the caller adds. It is meant for a client that is
//! told to trust it (`--cacert`) or told not to check (`-k`), never for the open internet.

use boring::asn1::Asn1Time;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::ssl::{AlpnError, SslAcceptor, SslMethod, SslSessionCacheMode};
use boring::x509::extension::SubjectAlternativeName;
use boring::x509::{X509Name, X509};

use crate::error::{Error, Result};

/// A certificate with its private key.
pub struct SelfSignedCert {
    cert: X509,
    key: PKey<Private>,
}

impl SelfSignedCert {
    /// Generates a fresh key and certificate for `localhost`, `127.0.0.1`, `::1` and `names`
    /// (IP literals become IP SANs, the rest DNS SANs).
    ///
    /// # Errors
    ///
    /// BoringSSL failing to generate the key or sign (it does not in practice).
    pub fn generate(names: &[String]) -> Result<SelfSignedCert> {
        build(names).map_err(|e| {
            Error::invalid_input(format!("cannot create a self-signed certificate: {e}"))
        })
    }

    /// Loads a certificate and key from PEM files.
    ///
    /// # Errors
    ///
    /// Unreadable files, or files that are not PEM certificate / private key.
    pub fn from_files(cert: &std::path::Path, key: &std::path::Path) -> Result<SelfSignedCert> {
        let read = |p: &std::path::Path| {
            crate::files::read_capped(p, crate::files::MAX_CONFIG_FILE_BYTES)
                .map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        let cert_x509 = X509::from_pem(&read(cert)?).map_err(|e| {
            Error::invalid_input(format!("{}: not a PEM certificate: {e}", cert.display()))
        })?;
        let key_pkey = PKey::private_key_from_pem(&read(key)?).map_err(|e| {
            Error::invalid_input(format!("{}: not a PEM private key: {e}", key.display()))
        })?;
        Ok(SelfSignedCert {
            cert: cert_x509,
            key: key_pkey,
        })
    }

    /// The certificate as PEM, for a client's `--cacert`.
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap_or_default()
    }

    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().unwrap_or_default()
    }

    /// A TLS acceptor serving this certificate that picks the first protocol of `alpn`
    /// (in server preference order) the client offers, and keeps a server-side session
    /// cache so clients can resume.
    ///
    /// # Errors
    ///
    /// BoringSSL refusing the certificate or key.
    pub fn acceptor(&self, alpn: &'static [&'static [u8]]) -> Result<SslAcceptor> {
        let tls = |e: boring::error::ErrorStack| Error::invalid_input(format!("TLS acceptor: {e}"));
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(tls)?;
        b.set_certificate(&self.cert).map_err(tls)?;
        b.set_private_key(&self.key).map_err(tls)?;
        b.set_alpn_select_callback(move |_, client| select_alpn(alpn, client));
        b.set_session_cache_mode(SslSessionCacheMode::SERVER);
        Ok(b.build())
    }
}

/// Picks the first of `ours` that appears in the client's ALPN wire list.
pub(crate) fn select_alpn<'a>(
    ours: &[&[u8]],
    client: &'a [u8],
) -> std::result::Result<&'a [u8], AlpnError> {
    for want in ours {
        let mut rest = client;
        while let Some((&n, tail)) = rest.split_first() {
            let n = usize::from(n);
            if tail.len() < n {
                break;
            }
            if &tail[..n] == *want {
                return Ok(&tail[..n]);
            }
            rest = &tail[n..];
        }
    }
    Err(AlpnError::NOACK)
}

fn build(names: &[String]) -> std::result::Result<SelfSignedCert, boring::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    // A distinct subject per certificate: a trust bundle holding two of them (a proxy's
    // and an origin's) must not confuse the issuer lookup, which goes by subject name.
    let id = rand::random::<u32>();
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, &format!("mummer loopback {id:08x}"))?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = boring::bn::BigNum::from_u32(id)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    b.set_not_before(&not_before)?;
    let not_after = Asn1Time::days_from_now(30)?;
    b.set_not_after(&not_after)?;
    let mut san = SubjectAlternativeName::new();
    san.dns("localhost").ip("127.0.0.1").ip("::1");
    for n in names {
        if n.parse::<std::net::IpAddr>().is_ok() {
            san.ip(n);
        } else {
            san.dns(n);
        }
    }
    let ext = san.build(&b.x509v3_context(None, None))?;
    b.append_extension(&ext)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok(SelfSignedCert {
        cert: b.build(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_prefers_server_order() {
        let client = b"\x08http/1.1\x02h2";
        assert_eq!(
            select_alpn(&[b"h2", b"http/1.1"], client).ok(),
            Some(&b"h2"[..])
        );
        assert_eq!(
            select_alpn(&[b"http/1.1"], client).ok(),
            Some(&b"http/1.1"[..])
        );
        assert!(select_alpn(&[b"h3"], client).is_err());
        // A truncated list is not read past its end.
        assert!(select_alpn(&[b"h2"], b"\x05h2").is_err());
    }

    #[test]
    fn certificate_names_loopback_and_extras() {
        let c = SelfSignedCert::generate(&["shop.test".into(), "10.0.0.1".into()]).unwrap();
        let pem = String::from_utf8(c.cert_pem()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let sans: Vec<String> = c
            .cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| {
                n.dnsname()
                    .map(str::to_owned)
                    .or_else(|| n.ipaddress().map(|ip| format!("{ip:?}")))
                    .unwrap()
            })
            .collect();
        assert!(sans.contains(&"localhost".to_string()));
        assert!(sans.contains(&"shop.test".to_string()));
        assert_eq!(sans.len(), 5);
    }
}
