//! ClientHello parsing and the fingerprints computed from it (JA3, JA3N, JA4, JA4_r).
//!
//! Pure functions over the bytes of one TLS record: no sockets, so the parser is tested
//! against the raw captures in `tests/data/fingerprints/clienthello/`.

use serde::Serialize;
use sha2::Digest;

/// Everything the inspector reports about one ClientHello.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClientHello {
    /// legacy_version as hex (`0303`).
    pub legacy_version: String,
    /// session_id length.
    pub session_id_len: usize,
    /// Cipher suites in wire order, GREASE included (as `0x1301`).
    pub cipher_suites: Vec<u16>,
    /// Extension types in wire order, GREASE included.
    pub extensions: Vec<u16>,
    /// server_name.
    pub sni: Option<String>,
    /// supported_groups in order, GREASE included.
    pub groups: Vec<u16>,
    /// key_share entries: group and key length.
    pub key_shares: Vec<(u16, usize)>,
    /// signature_algorithms in order, GREASE included.
    pub sigalgs: Vec<u16>,
    /// supported_versions in order, GREASE included.
    pub supported_versions: Vec<u16>,
    /// ec_point_formats.
    pub ec_point_formats: Vec<u8>,
    /// ALPN protocols.
    pub alpn: Vec<String>,
    /// ALPS: codepoint and protocols.
    pub alps: Option<(u16, Vec<String>)>,
    /// compress_certificate algorithms.
    pub cert_compression: Vec<u16>,
    /// psk_key_exchange_modes.
    pub psk_modes: Vec<u8>,
    /// encrypted_client_hello (outer): kdf, aead, config id, enc length, payload length.
    pub ech: Option<EchInfo>,
    /// trust_anchors (0xca34) payload as hex.
    pub trust_anchors_hex: Option<String>,
    /// GREASE extensions: type and payload hex, in order.
    pub grease_extensions: Vec<(u16, String)>,
    /// pre_shared_key identities count, when resuming.
    pub psk_identities: Option<usize>,
    /// record_size_limit value.
    pub record_size_limit: Option<u16>,
    /// quic_transport_parameters (0x39) as `(id, value hex)` in wire order, when sent.
    pub quic_transport_parameters: Option<Vec<(u64, String)>>,
    /// Whether this ClientHello came in QUIC CRYPTO frames (JA4 then starts with `q`);
    /// set by the caller, since the bytes alone do not say.
    pub over_quic: bool,
}

/// The public fields of an outer ECH extension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EchInfo {
    /// HPKE KDF id.
    pub kdf_id: u16,
    /// HPKE AEAD id.
    pub aead_id: u16,
    /// Config id.
    pub config_id: u8,
    /// Length of the encapsulated key.
    pub enc_len: usize,
    /// Length of the encrypted payload.
    pub payload_len: usize,
}

/// Why bytes are not a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a ClientHello: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// True for RFC 8701 GREASE values (0x0a0a, 0x1a1a, ... 0xfafa).
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A bounds-checked reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.buf.len() < n {
            return Err(ParseError("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ParseError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Result<usize, ParseError> {
        let b = self.take(3)?;
        Ok((usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    fn vec8(&mut self) -> Result<Reader<'a>, ParseError> {
        let n = usize::from(self.u8()?);
        Ok(Reader { buf: self.take(n)? })
    }
    fn vec16(&mut self) -> Result<Reader<'a>, ParseError> {
        let n = usize::from(self.u16()?);
        Ok(Reader { buf: self.take(n)? })
    }
    fn u16s(mut self) -> Result<Vec<u16>, ParseError> {
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            out.push(self.u16()?);
        }
        Ok(out)
    }
    fn strings8(mut self) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            out.push(String::from_utf8_lossy(self.vec8()?.buf).into_owned());
        }
        Ok(out)
    }
}

/// Bytes needed to hold the whole first TLS record, once its 5-byte header is known.
pub fn record_len(header: &[u8]) -> Option<usize> {
    (header.len() >= 5 && header[0] == 0x16)
        .then(|| 5 + usize::from(u16::from_be_bytes([header[3], header[4]])))
}

impl ClientHello {
    /// Parses a TLS record (starting with `16 03 01`) or a bare handshake message.
    ///
    /// # Errors
    ///
    /// [`ParseError`] naming what is wrong; never panics on any input.
    pub fn parse(bytes: &[u8]) -> Result<ClientHello, ParseError> {
        let mut r = Reader { buf: bytes };
        if bytes.first() == Some(&0x16) {
            r.take(3)?;
            let len = usize::from(r.u16()?);
            r = Reader { buf: r.take(len)? };
        }
        if r.u8()? != 0x01 {
            return Err(ParseError("handshake type is not client_hello"));
        }
        let len = r.u24()?;
        let mut r = Reader { buf: r.take(len)? };
        let mut ch = ClientHello {
            legacy_version: hex::encode(r.take(2)?),
            ..Default::default()
        };
        r.take(32)?;
        ch.session_id_len = r.vec8()?.buf.len();
        ch.cipher_suites = r.vec16()?.u16s()?;
        r.vec8()?;
        if r.buf.is_empty() {
            return Ok(ch);
        }
        let mut exts = r.vec16()?;
        while !exts.buf.is_empty() {
            let ty = exts.u16()?;
            let mut body = exts.vec16()?;
            ch.extensions.push(ty);
            if is_grease(ty) {
                ch.grease_extensions.push((ty, hex::encode(body.buf)));
                continue;
            }
            match ty {
                0 => {
                    let mut list = body.vec16()?;
                    if list.u8()? == 0 {
                        ch.sni = Some(String::from_utf8_lossy(list.vec16()?.buf).into_owned());
                    }
                }
                10 => ch.groups = body.vec16()?.u16s()?,
                11 => ch.ec_point_formats = body.vec8()?.buf.to_vec(),
                13 => ch.sigalgs = body.vec16()?.u16s()?,
                16 => ch.alpn = body.vec16()?.strings8()?,
                17513 | 17613 => ch.alps = Some((ty, body.vec16()?.strings8()?)),
                27 => ch.cert_compression = body.vec8()?.u16s()?,
                28 => ch.record_size_limit = Some(body.u16()?),
                41 => {
                    let mut ids = body.vec16()?;
                    let mut n = 0;
                    while !ids.buf.is_empty() {
                        ids.vec16()?;
                        ids.take(4)?;
                        n += 1;
                    }
                    ch.psk_identities = Some(n);
                }
                43 => ch.supported_versions = body.vec8()?.u16s()?,
                45 => ch.psk_modes = body.vec8()?.buf.to_vec(),
                51 => {
                    let mut shares = body.vec16()?;
                    while !shares.buf.is_empty() {
                        let group = shares.u16()?;
                        let key = shares.vec16()?;
                        ch.key_shares.push((group, key.buf.len()));
                    }
                }
                0xfe0d if body.u8()? == 0 => {
                    let kdf_id = body.u16()?;
                    let aead_id = body.u16()?;
                    let config_id = body.u8()?;
                    let enc_len = body.vec16()?.buf.len();
                    let payload_len = body.vec16()?.buf.len();
                    ch.ech = Some(EchInfo {
                        kdf_id,
                        aead_id,
                        config_id,
                        enc_len,
                        payload_len,
                    });
                }
                0xca34 => ch.trust_anchors_hex = Some(hex::encode(body.buf)),
                0x39 => {
                    let fields = crate::quic::params::split(body.buf)
                        .ok_or(ParseError("quic_transport_parameters are malformed"))?;
                    ch.quic_transport_parameters = Some(
                        fields
                            .into_iter()
                            .map(|(id, v)| (id, hex::encode(v)))
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        Ok(ch)
    }

    /// The highest offered TLS version as JA4 writes it (`13`, `12`, ...).
    fn ja4_version(&self) -> &'static str {
        let best = self
            .supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or_else(|| u16::from_str_radix(&self.legacy_version, 16).unwrap_or(0));
        match best {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            _ => "00",
        }
    }

    fn ja4_parts(&self) -> (String, Vec<String>, Vec<String>, Vec<String>) {
        let ciphers: Vec<u16> = self
            .cipher_suites
            .iter()
            .copied()
            .filter(|c| !is_grease(*c))
            .collect();
        let exts: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|e| !is_grease(*e))
            .collect();
        let alpn = match self.alpn.first() {
            Some(a) if !a.is_empty() => {
                let (f, l) = (
                    a.chars().next().unwrap_or('0'),
                    a.chars().last().unwrap_or('0'),
                );
                if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
                    format!("{f}{l}")
                } else {
                    let h = hex::encode(a.as_bytes());
                    format!("{}{}", &h[..1], &h[h.len() - 1..])
                }
            }
            _ => "00".to_string(),
        };
        let a = format!(
            "{}{}{}{:02}{:02}{}",
            if self.over_quic { 'q' } else { 't' },
            self.ja4_version(),
            if self.sni.is_some() { 'd' } else { 'i' },
            ciphers.len().min(99),
            exts.len().min(99),
            alpn
        );
        let mut sorted_ciphers: Vec<String> = ciphers.iter().map(|c| format!("{c:04x}")).collect();
        sorted_ciphers.sort();
        let mut sorted_exts: Vec<String> = exts
            .iter()
            .filter(|e| **e != 0 && **e != 16)
            .map(|e| format!("{e:04x}"))
            .collect();
        sorted_exts.sort();
        let sigs: Vec<String> = self
            .sigalgs
            .iter()
            .filter(|s| !is_grease(**s))
            .map(|s| format!("{s:04x}"))
            .collect();
        (a, sorted_ciphers, sorted_exts, sigs)
    }

    /// JA4 (FoxIO): `t13d1517h2_8daaf6152771_cb7bf5808d99`.
    pub fn ja4(&self) -> String {
        let (a, ciphers, exts, sigs) = self.ja4_parts();
        let b = truncated_sha256(&ciphers.join(","));
        let mut c_in = exts.join(",");
        if !sigs.is_empty() {
            c_in.push('_');
            c_in.push_str(&sigs.join(","));
        }
        format!("{a}_{b}_{}", truncated_sha256(&c_in))
    }

    /// JA4_r: JA4 with the raw sorted lists instead of hashes.
    pub fn ja4_r(&self) -> String {
        let (a, ciphers, exts, sigs) = self.ja4_parts();
        let mut out = format!("{a}_{}_{}", ciphers.join(","), exts.join(","));
        if !sigs.is_empty() {
            out.push('_');
            out.push_str(&sigs.join(","));
        }
        out
    }

    fn ja3_with(&self, sort_extensions: bool) -> String {
        let join = |v: &mut dyn Iterator<Item = u16>| {
            v.map(|x| x.to_string()).collect::<Vec<_>>().join("-")
        };
        let mut exts: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|e| !is_grease(*e))
            .collect();
        if sort_extensions {
            exts.sort_unstable();
        }
        format!(
            "{},{},{},{},{}",
            u16::from_str_radix(&self.legacy_version, 16).unwrap_or(0),
            join(
                &mut self
                    .cipher_suites
                    .iter()
                    .copied()
                    .filter(|c| !is_grease(*c))
            ),
            join(&mut exts.into_iter()),
            join(&mut self.groups.iter().copied().filter(|g| !is_grease(*g))),
            self.ec_point_formats
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("-"),
        )
    }

    /// JA3 string (extensions in wire order).
    pub fn ja3(&self) -> String {
        self.ja3_with(false)
    }

    /// JA3N string: JA3 with extensions sorted, stable under Chromium's permutation.
    pub fn ja3n(&self) -> String {
        self.ja3_with(true)
    }

    /// MD5 of [`ClientHello::ja3`].
    pub fn ja3_hash(&self) -> String {
        hex::encode(md5::Md5::digest(self.ja3().as_bytes()))
    }

    /// MD5 of [`ClientHello::ja3n`].
    pub fn ja3n_hash(&self) -> String {
        hex::encode(md5::Md5::digest(self.ja3n().as_bytes()))
    }
}

fn truncated_sha256(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_string();
    }
    let digest = hex::encode(sha2::Sha256::digest(s.as_bytes()));
    digest[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fingerprints");

    fn reference(file: &str) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/{file}")).unwrap()).unwrap()
    }

    fn hello(file: &str) -> ClientHello {
        let hex_text = std::fs::read_to_string(format!("{DIR}/clienthello/{file}")).unwrap();
        ClientHello::parse(&hex::decode(hex_text.trim()).unwrap()).unwrap()
    }

    #[test]
    fn ja4_of_every_capture_matches_its_reference() {
        let chromium = reference("chromium-156-linux.json");
        let firefox = reference("firefox-esr-153-linux.json");
        for entry in std::fs::read_dir(format!("{DIR}/clienthello")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let r = if name.starts_with("chromium") {
                &chromium
            } else {
                &firefox
            };
            let want = if name.contains(".resumed.") {
                &r["resumption"]["ja4"]
            } else {
                &r["ja4"]
            };
            let ch = hello(&name);
            assert_eq!(ch.ja4(), want.as_str().unwrap(), "{name}");
            if !name.contains(".resumed.") {
                assert_eq!(ch.ja4_r(), r["ja4_r"].as_str().unwrap(), "{name}");
                assert_eq!(ch.ja3n(), r["ja3n"].as_str().unwrap(), "{name}");
                assert_eq!(ch.ja3n_hash(), r["ja3n_hash"].as_str().unwrap(), "{name}");
            }
        }
    }

    #[test]
    fn chromium_fields_are_read() {
        let ch = hello("chromium-156.conn02.hex");
        assert_eq!(ch.sni.as_deref(), Some("fp.test"));
        assert!(is_grease(ch.sigalgs[0]));
        assert_eq!(ch.alps, Some((17613, vec!["h2".to_string()])));
        assert_eq!(ch.key_shares[1], (0x11ec, 1216));
        assert!(
            is_grease(*ch.extensions.first().unwrap()) && is_grease(*ch.extensions.last().unwrap())
        );
        let ech = ch.ech.unwrap();
        assert_eq!((ech.kdf_id, ech.aead_id, ech.enc_len), (1, 1, 32));
        assert!(ch.trust_anchors_hex.is_some());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x16\x03\x01\x00",
            b"\x16\x03\x01\x00\x05\x01\x00\x00\xff\x03",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(ClientHello::parse(bytes).is_err());
        }
        let full = hex::decode(
            std::fs::read_to_string(format!("{DIR}/clienthello/chromium-156.conn02.hex"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        for cut in (0..full.len()).step_by(37) {
            let _ = ClientHello::parse(&full[..cut]);
        }
    }
}
