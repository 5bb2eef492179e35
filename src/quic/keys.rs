//! QUIC packet protection over BoringSSL (RFC 9001 section 5): the key schedule from a
//! TLS secret, AEAD payload protection, header protection, Initial secrets and the
//! Retry integrity tag.
//!
//! Pure computation, no I/O and no TLS state: [`super::session`] hands the secrets
//! BoringSSL derives to [`Suite::keys`], and the inspector uses [`initial_secrets`] to
//! read a client's Initial packets. Every primitive is BoringSSL's (`boring::aead`,
//! `boring::hkdf`, AES and ChaCha20 blocks from `boring-sys`), so no second crypto
//! library sits in the client.

use boring::aead::{AeadCtx, Algorithm};
use boring::hash::MessageDigest;
use boring::hkdf::HkdfSuite;
use bytes::BytesMut;
use quinn_proto::crypto::{CryptoError, HeaderKey, KeyPair, Keys, PacketKey};
use std::sync::Mutex;

/// The QUIC v1 Initial salt (RFC 9001 section 5.2).
const INITIAL_SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// The Retry integrity key and nonce for QUIC v1 (RFC 9001 section 5.8).
const RETRY_KEY_V1: [u8; 16] = [
    0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68, 0xc8, 0x4e,
];
const RETRY_NONCE_V1: [u8; 12] = [
    0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb,
];
/// QUIC version 1, the only one mummer speaks (and the one Chromium sends first).
pub const QUIC_V1: u32 = 1;
/// Every AEAD QUIC uses has a 16-byte tag; header protection samples 16 bytes.
const TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;

/// One of the three TLS 1.3 cipher suites QUIC can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// TLS_AES_128_GCM_SHA256 (0x1301), also the Initial suite.
    Aes128Gcm,
    /// TLS_AES_256_GCM_SHA384 (0x1302).
    Aes256Gcm,
    /// TLS_CHACHA20_POLY1305_SHA256 (0x1303).
    ChaCha20Poly1305,
}

impl Suite {
    /// The suite of a TLS 1.3 cipher by its IANA code, `None` for anything else.
    pub fn from_tls_id(id: u16) -> Option<Suite> {
        match id {
            0x1301 => Some(Suite::Aes128Gcm),
            0x1302 => Some(Suite::Aes256Gcm),
            0x1303 => Some(Suite::ChaCha20Poly1305),
            _ => None,
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            Suite::Aes256Gcm => MessageDigest::sha384(),
            _ => MessageDigest::sha256(),
        }
    }

    fn key_len(self) -> usize {
        match self {
            Suite::Aes128Gcm => 16,
            _ => 32,
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Suite::Aes128Gcm => Algorithm::aes_128_gcm(),
            Suite::Aes256Gcm => Algorithm::aes_256_gcm(),
            Suite::ChaCha20Poly1305 => Algorithm::chacha20_poly1305(),
        }
    }

    /// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context.
    pub fn expand_label(
        self,
        secret: &[u8],
        label: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        expand_label(self.digest(), secret, label, out)
    }

    /// The packet key of one direction from its traffic secret.
    pub fn packet_key(self, secret: &[u8]) -> Result<QuicPacketKey, CryptoError> {
        let mut key = [0u8; 32];
        let key = &mut key[..self.key_len()];
        self.expand_label(secret, b"quic key", key)?;
        let mut iv = [0u8; 12];
        self.expand_label(secret, b"quic iv", &mut iv)?;
        let ctx = AeadCtx::new(&self.algorithm(), key, TAG_LEN).map_err(|_| CryptoError)?;
        Ok(QuicPacketKey {
            ctx: Mutex::new(ctx),
            iv,
            suite: self,
        })
    }

    /// The header protection key of one direction from its traffic secret.
    pub fn header_key(self, secret: &[u8]) -> Result<QuicHeaderKey, CryptoError> {
        let mut hp = [0u8; 32];
        self.expand_label(secret, b"quic hp", &mut hp[..self.key_len()])?;
        QuicHeaderKey::new(self, &hp[..self.key_len()])
    }

    /// Header and packet keys for both directions.
    pub fn keys(self, local: &[u8], remote: &[u8]) -> Result<Keys, CryptoError> {
        Ok(Keys {
            header: KeyPair {
                local: Box::new(self.header_key(local)?),
                remote: Box::new(self.header_key(remote)?),
            },
            packet: KeyPair {
                local: Box::new(self.packet_key(local)?),
                remote: Box::new(self.packet_key(remote)?),
            },
        })
    }

    /// The next generation of a 1-RTT traffic secret (the key update, "quic ku").
    pub fn next_secret(self, secret: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut next = vec![0u8; secret.len()];
        self.expand_label(secret, b"quic ku", &mut next)?;
        Ok(next)
    }
}

fn expand_label(
    digest: MessageDigest,
    secret: &[u8],
    label: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    const PREFIX: &[u8] = b"tls13 ";
    let len = u16::try_from(out.len()).map_err(|_| CryptoError)?;
    let label_len = u8::try_from(PREFIX.len() + label.len()).map_err(|_| CryptoError)?;
    let mut info = Vec::with_capacity(4 + PREFIX.len() + label.len());
    info.extend_from_slice(&len.to_be_bytes());
    info.push(label_len);
    info.extend_from_slice(PREFIX);
    info.extend_from_slice(label);
    info.push(0);
    HkdfSuite::new(digest)
        .expand(secret, &info, out)
        .map_err(|_| CryptoError)
}

/// The client and server Initial secrets for a client's first destination connection
/// ID (RFC 9001 section 5.2), in that order.
pub fn initial_secrets(dst_cid: &[u8]) -> Result<([u8; 32], [u8; 32]), CryptoError> {
    let hkdf = HkdfSuite::new(MessageDigest::sha256());
    let initial = hkdf
        .extract(&INITIAL_SALT_V1, dst_cid)
        .map_err(|_| CryptoError)?;
    let mut client = [0u8; 32];
    let mut server = [0u8; 32];
    expand_label(MessageDigest::sha256(), &initial, b"client in", &mut client)?;
    expand_label(MessageDigest::sha256(), &initial, b"server in", &mut server)?;
    Ok((client, server))
}

/// The Initial keys for `dst_cid` as seen from the client (`local` = client's).
pub fn initial_client_keys(dst_cid: &[u8]) -> Result<Keys, CryptoError> {
    let (client, server) = initial_secrets(dst_cid)?;
    Suite::Aes128Gcm.keys(&client, &server)
}

/// Whether a Retry packet's integrity tag is right (RFC 9001 section 5.8): `header`
/// and `payload` as quinn splits the packet, the tag being the payload's last 16 bytes.
pub fn retry_tag_is_valid(orig_dst_cid: &[u8], header: &[u8], payload: &[u8]) -> bool {
    let Some(tag_start) = payload.len().checked_sub(TAG_LEN) else {
        return false;
    };
    let Ok(cid_len) = u8::try_from(orig_dst_cid.len()) else {
        return false;
    };
    let mut pseudo = Vec::with_capacity(1 + orig_dst_cid.len() + header.len() + tag_start);
    pseudo.push(cid_len);
    pseudo.extend_from_slice(orig_dst_cid);
    pseudo.extend_from_slice(header);
    pseudo.extend_from_slice(&payload[..tag_start]);
    let Ok(mut ctx) = AeadCtx::new(&Algorithm::aes_128_gcm(), &RETRY_KEY_V1, TAG_LEN) else {
        return false;
    };
    let mut tag = [0u8; TAG_LEN];
    match ctx.seal_in_place_mut(&RETRY_NONCE_V1, &mut [], &mut tag, &pseudo) {
        Ok(written) => boring::memcmp::eq(written, &payload[tag_start..]),
        Err(_) => false,
    }
}

/// AEAD protection of packet payloads in one direction.
pub struct QuicPacketKey {
    // `PacketKey` hands out `&self` to one connection at a time; the lock is never
    // contended and keeps the context's `&mut` API safe.
    ctx: Mutex<AeadCtx>,
    iv: [u8; 12],
    suite: Suite,
}

impl QuicPacketKey {
    fn nonce(&self, packet: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(packet.to_be_bytes()) {
            *n ^= p;
        }
        nonce
    }

    /// Decrypts `payload` (ciphertext and tag) in place, returning the plaintext length.
    pub fn open(
        &self,
        packet: u64,
        header: &[u8],
        payload: &mut [u8],
    ) -> Result<usize, CryptoError> {
        let plain_len = payload.len().checked_sub(TAG_LEN).ok_or(CryptoError)?;
        let (text, tag) = payload.split_at_mut(plain_len);
        let nonce = self.nonce(packet);
        let mut ctx = self.ctx.lock().unwrap_or_else(|p| p.into_inner());
        ctx.open_in_place_mut(&nonce, text, tag, header)
            .map_err(|_| CryptoError)?;
        Ok(plain_len)
    }
}

impl PacketKey for QuicPacketKey {
    fn encrypt(&self, packet: u64, buf: &mut [u8], header_len: usize) {
        let (header, rest) = buf.split_at_mut(header_len);
        let text_len = rest.len().saturating_sub(TAG_LEN);
        let (text, tag) = rest.split_at_mut(text_len);
        let nonce = self.nonce(packet);
        let mut ctx = self.ctx.lock().unwrap_or_else(|p| p.into_inner());
        // Sealing cannot fail for a valid context and 16 bytes of tag room, which quinn
        // always reserves (`tag_len`); a failure would leave the tag zero and the peer
        // would drop the packet as corrupt, which is the safe outcome.
        if ctx.seal_in_place_mut(&nonce, text, tag, header).is_err() {
            tag.fill(0);
        }
    }

    fn decrypt(
        &self,
        packet: u64,
        header: &[u8],
        payload: &mut BytesMut,
    ) -> Result<(), CryptoError> {
        let plain_len = self.open(packet, header, payload)?;
        payload.truncate(plain_len);
        Ok(())
    }

    fn tag_len(&self) -> usize {
        TAG_LEN
    }

    fn confidentiality_limit(&self) -> u64 {
        // RFC 9001 section 6.6.
        match self.suite {
            Suite::ChaCha20Poly1305 => u64::MAX,
            _ => 1 << 23,
        }
    }

    fn integrity_limit(&self) -> u64 {
        match self.suite {
            Suite::ChaCha20Poly1305 => 1 << 36,
            _ => 1 << 52,
        }
    }
}

/// Header protection in one direction: AES-ECB or ChaCha20 over the sample.
pub struct QuicHeaderKey {
    kind: HeaderCipher,
}

enum HeaderCipher {
    // Boxed: the expanded key (244 bytes) would size every header key.
    Aes(Box<boring_sys::AES_KEY>),
    ChaCha([u8; 32]),
}

// SAFETY: an expanded AES key is plain bytes that BoringSSL only reads.
unsafe impl Send for HeaderCipher {}
// SAFETY: as above; `AES_encrypt` takes the key by const pointer.
unsafe impl Sync for HeaderCipher {}

impl QuicHeaderKey {
    fn new(suite: Suite, key: &[u8]) -> Result<Self, CryptoError> {
        let kind = match suite {
            Suite::ChaCha20Poly1305 => {
                HeaderCipher::ChaCha(key.try_into().map_err(|_| CryptoError)?)
            }
            _ => {
                let bits = u32::try_from(key.len() * 8).map_err(|_| CryptoError)?;
                // SAFETY: AES_KEY is a plain C struct of integers, valid when zeroed.
                let mut aes: boring_sys::AES_KEY = unsafe { std::mem::zeroed() };
                // SAFETY: `key` holds `bits / 8` readable bytes and `aes` is a valid,
                // exclusively borrowed AES_KEY for the duration of the call.
                let rc = unsafe { boring_sys::AES_set_encrypt_key(key.as_ptr(), bits, &mut aes) };
                if rc != 0 {
                    return Err(CryptoError);
                }
                HeaderCipher::Aes(Box::new(aes))
            }
        };
        Ok(QuicHeaderKey { kind })
    }

    /// The five-byte mask for one sample (RFC 9001 section 5.4).
    fn mask(&self, sample: &[u8; SAMPLE_LEN]) -> [u8; 5] {
        let mut mask = [0u8; 5];
        match &self.kind {
            HeaderCipher::Aes(key) => {
                let mut block = [0u8; 16];
                // SAFETY: `sample` and `block` are 16-byte buffers, the AES block size;
                // `key` is an expanded encryption key.
                unsafe { boring_sys::AES_encrypt(sample.as_ptr(), block.as_mut_ptr(), &**key) };
                mask.copy_from_slice(&block[..5]);
            }
            HeaderCipher::ChaCha(key) => {
                let counter = u32::from_le_bytes([sample[0], sample[1], sample[2], sample[3]]);
                let zeros = [0u8; 5];
                // SAFETY: `mask` and `zeros` are 5 bytes each (the length passed), the
                // key is 32 bytes and the nonce the 12 bytes after the counter.
                unsafe {
                    boring_sys::CRYPTO_chacha_20(
                        mask.as_mut_ptr(),
                        zeros.as_ptr(),
                        mask.len(),
                        key.as_ptr(),
                        sample[4..].as_ptr(),
                        counter,
                    )
                };
            }
        }
        mask
    }

    fn sample(pn_offset: usize, packet: &[u8]) -> Option<[u8; SAMPLE_LEN]> {
        let start = pn_offset.checked_add(4)?;
        packet.get(start..start + SAMPLE_LEN)?.try_into().ok()
    }

    /// Removes header protection; `false` when the packet is too short to carry a
    /// sample (the caller drops it).
    pub fn unprotect(&self, pn_offset: usize, packet: &mut [u8]) -> bool {
        let Some(sample) = Self::sample(pn_offset, packet) else {
            return false;
        };
        let mask = self.mask(&sample);
        let first_mask = if packet[0] & 0x80 != 0 { 0x0f } else { 0x1f };
        packet[0] ^= mask[0] & first_mask;
        let pn_len = usize::from(packet[0] & 0x03) + 1;
        for (b, m) in packet[pn_offset..pn_offset + pn_len]
            .iter_mut()
            .zip(&mask[1..])
        {
            *b ^= m;
        }
        true
    }
}

impl HeaderKey for QuicHeaderKey {
    fn decrypt(&self, pn_offset: usize, packet: &mut [u8]) {
        self.unprotect(pn_offset, packet);
    }

    fn encrypt(&self, pn_offset: usize, packet: &mut [u8]) {
        let Some(sample) = Self::sample(pn_offset, packet) else {
            return;
        };
        let mask = self.mask(&sample);
        let pn_len = usize::from(packet[0] & 0x03) + 1;
        let first_mask = if packet[0] & 0x80 != 0 { 0x0f } else { 0x1f };
        packet[0] ^= mask[0] & first_mask;
        for (b, m) in packet[pn_offset..pn_offset + pn_len]
            .iter_mut()
            .zip(&mask[1..])
        {
            *b ^= m;
        }
    }

    fn sample_size(&self) -> usize {
        SAMPLE_LEN
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from RFC 9001 Appendix A.
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).expect("test vector is hex")
    }

    #[test]
    fn initial_secrets_match_rfc9001_a1() {
        let (client, server) = initial_secrets(&unhex("8394c8f03e515708")).expect("derive");
        assert_eq!(
            client.to_vec(),
            unhex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea")
        );
        assert_eq!(
            server.to_vec(),
            unhex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b")
        );
        let mut key = [0u8; 16];
        Suite::Aes128Gcm
            .expand_label(&client, b"quic key", &mut key)
            .expect("key");
        assert_eq!(key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        let mut iv = [0u8; 12];
        Suite::Aes128Gcm
            .expand_label(&client, b"quic iv", &mut iv)
            .expect("iv");
        assert_eq!(iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        let mut hp = [0u8; 16];
        Suite::Aes128Gcm
            .expand_label(&client, b"quic hp", &mut hp)
            .expect("hp");
        assert_eq!(hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn chacha20_short_header_packet_matches_rfc9001_a5() {
        let secret = unhex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b");
        let suite = Suite::ChaCha20Poly1305;
        let packet_key = suite.packet_key(&secret).expect("packet key");
        let header_key = suite.header_key(&secret).expect("header key");
        let mut packet = unhex("4200bff4");
        packet.push(0x01);
        packet.extend_from_slice(&[0u8; 16]);
        packet_key.encrypt(654_360_564, &mut packet, 4);
        header_key.encrypt(1, &mut packet);
        assert_eq!(packet, unhex("4cfe4189655e5cd55c41f69080575d7999c25a5bfb"));
        let ku = suite.next_secret(&secret).expect("key update");
        assert_eq!(
            ku,
            unhex("1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9")
        );

        // And back.
        assert!(header_key.unprotect(1, &mut packet));
        assert_eq!(&packet[..4], unhex("4200bff4").as_slice());
        let (header, payload) = packet.split_at_mut(4);
        let n = packet_key
            .open(654_360_564, header, payload)
            .expect("opens");
        assert_eq!(&payload[..n], &[0x01]);
    }

    #[test]
    fn aes_packets_round_trip_and_tampering_is_refused() {
        let keys = initial_client_keys(&unhex("8394c8f03e515708")).expect("keys");
        let mut packet = vec![0xc3, 0, 0, 0, 1, 0, 0, 0, 2];
        packet.extend_from_slice(b"a payload long enough to sample");
        packet.extend_from_slice(&[0u8; 16]);
        let original = packet.clone();
        keys.packet.local.encrypt(2, &mut packet, 9);
        keys.header.local.encrypt(5, &mut packet);
        assert_ne!(packet, original);
        keys.header.local.decrypt(5, &mut packet);
        let (header, payload) = packet.split_at(9);
        let mut body = BytesMut::from(payload);
        keys.packet
            .local
            .decrypt(2, header, &mut body)
            .expect("round trip");
        assert_eq!(&body[..], b"a payload long enough to sample");
        let mut bad = BytesMut::from(payload);
        bad[0] ^= 1;
        assert!(keys.packet.local.decrypt(2, header, &mut bad).is_err());
        assert!(keys
            .packet
            .local
            .decrypt(3, header, &mut BytesMut::from(payload))
            .is_err());
    }

    #[test]
    fn retry_integrity_tag_matches_rfc9001_a4() {
        let packet =
            unhex("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba");
        let (header, payload) = packet.split_at(packet.len() - 20);
        let odcid = unhex("8394c8f03e515708");
        assert!(retry_tag_is_valid(&odcid, header, payload));
        let mut forged = packet.clone();
        forged[10] ^= 1;
        let (header, payload) = forged.split_at(forged.len() - 20);
        assert!(!retry_tag_is_valid(&odcid, header, payload));
    }

    #[test]
    fn short_inputs_are_refused_without_panicking() {
        let keys = initial_client_keys(b"").expect("empty cid still derives");
        let mut tiny = BytesMut::from(&[1u8, 2, 3][..]);
        assert!(keys.packet.remote.decrypt(0, &[], &mut tiny).is_err());
        let mut short = [0xc0u8, 1, 2];
        keys.header.remote.decrypt(1, &mut short);
        assert_eq!(short, [0xc0, 1, 2]);
        assert!(!retry_tag_is_valid(&[1, 2], &[0xf0], &[0u8; 3]));
    }
}
