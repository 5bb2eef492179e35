//! Reading a QUIC client's Initial packets as an observer: what the inspector needs to
//! see a QUIC ClientHello, which travels encrypted (with keys anyone can derive from
//! the packet's destination connection ID, RFC 9001 section 5.2).
//!
//! [`InitialReader`] takes the client's datagrams in arrival order, removes header and
//! payload protection, walks the frames and puts the CRYPTO stream back together by
//! offset (Chromium splits and reorders its ClientHello across frames and packets on
//! purpose), and reports each packet's shape: datagram size, header lengths, frames.
//! Pure and bounded: at most [`MAX_CRYPTO_BYTES`] of CRYPTO data and
//! [`MAX_PACKETS`] packets are kept; anything malformed is an [`InitialError`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::keys::{self, Suite, QUIC_V1};
use super::params::read_varint;

/// CRYPTO bytes kept per connection (a ClientHello is a few KiB; 64 KiB is generous).
pub const MAX_CRYPTO_BYTES: u64 = 64 * 1024;
/// Initial packets described per connection.
pub const MAX_PACKETS: usize = 32;

/// Why a datagram could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialError(pub &'static str);

impl std::fmt::Display for InitialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QUIC Initial: {}", self.0)
    }
}

impl std::error::Error for InitialError {}

/// The shape of one Initial packet as it arrived.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InitialPacket {
    /// Size of the UDP datagram that carried it.
    pub datagram_len: usize,
    /// Size of this packet within the datagram.
    pub packet_len: usize,
    /// QUIC version.
    pub version: u32,
    /// Destination and source connection ID lengths.
    pub dcid_len: usize,
    /// Source connection ID length.
    pub scid_len: usize,
    /// Token length.
    pub token_len: usize,
    /// Packet number length on the wire.
    pub pn_len: usize,
    /// Packet number.
    pub packet_number: u64,
    /// Frame types in order, runs of PADDING counted as one (`padding×N`).
    pub frames: Vec<String>,
}

/// Reassembles a client's CRYPTO stream from its Initial packets.
#[derive(Debug, Default)]
pub struct InitialReader {
    dcid: Option<Vec<u8>>,
    crypto: BTreeMap<u64, Vec<u8>>,
    crypto_bytes: u64,
    /// Every Initial packet read, in order (at most [`MAX_PACKETS`]).
    pub packets: Vec<InitialPacket>,
}

impl InitialReader {
    /// A reader for one connection.
    pub fn new() -> Self {
        InitialReader::default()
    }

    /// The destination connection ID of the client's first Initial.
    pub fn original_dcid(&self) -> Option<&[u8]> {
        self.dcid.as_deref()
    }

    /// Reads every Initial packet in one datagram; other packet types (0-RTT,
    /// Handshake, short header) are skipped.
    ///
    /// # Errors
    ///
    /// [`InitialError`] for a malformed packet or one that does not decrypt.
    pub fn push_datagram(&mut self, datagram: &[u8]) -> Result<(), InitialError> {
        let mut rest = datagram;
        while let Some(&first) = rest.first() {
            if first & 0x80 == 0 {
                break; // a short header packet runs to the end of the datagram
            }
            let used = self.read_packet(rest, datagram.len())?;
            rest = &rest[used..];
        }
        Ok(())
    }

    /// The ClientHello handshake message once its bytes are all here.
    pub fn client_hello(&self) -> Option<Vec<u8>> {
        let mut stream = Vec::new();
        for (offset, bytes) in &self.crypto {
            let have = stream.len() as u64;
            if *offset > have {
                break;
            }
            let skip = usize::try_from(have - offset).ok()?;
            if skip < bytes.len() {
                stream.extend_from_slice(&bytes[skip..]);
            }
        }
        if stream.len() < 4 || stream[0] != 0x01 {
            return None;
        }
        let len =
            (usize::from(stream[1]) << 16) | (usize::from(stream[2]) << 8) | usize::from(stream[3]);
        (stream.len() >= 4 + len).then(|| stream[..4 + len].to_vec())
    }

    fn read_packet(&mut self, packet: &[u8], datagram_len: usize) -> Result<usize, InitialError> {
        let e = InitialError;
        let mut r = packet;
        let first = take(&mut r, 1).ok_or(e("no header"))?[0];
        let version = u32::from_be_bytes(
            take(&mut r, 4)
                .ok_or(e("no version"))?
                .try_into()
                .map_err(|_| e("no version"))?,
        );
        let dcid_len = usize::from(take(&mut r, 1).ok_or(e("no DCID length"))?[0]);
        if dcid_len > 20 {
            return Err(e("DCID longer than 20 bytes"));
        }
        let dcid = take(&mut r, dcid_len).ok_or(e("DCID cut short"))?.to_vec();
        let scid_len = usize::from(take(&mut r, 1).ok_or(e("no SCID length"))?[0]);
        if scid_len > 20 {
            return Err(e("SCID longer than 20 bytes"));
        }
        take(&mut r, scid_len).ok_or(e("SCID cut short"))?;
        let packet_type = (first >> 4) & 0x03;
        let is_initial = packet_type == 0;
        let token_len = if is_initial {
            let n = usize::try_from(read_varint(&mut r).ok_or(e("no token length"))?)
                .map_err(|_| e("token length"))?;
            take(&mut r, n).ok_or(e("token cut short"))?;
            n
        } else {
            0
        };
        let length =
            usize::try_from(read_varint(&mut r).ok_or(e("no length"))?).map_err(|_| e("length"))?;
        let pn_offset = packet.len() - r.len();
        let end = pn_offset.checked_add(length).ok_or(e("length overflows"))?;
        if end > packet.len() {
            return Err(e("packet longer than its datagram"));
        }
        if version != QUIC_V1 {
            return Err(e("not QUIC version 1"));
        }
        if !is_initial {
            return Ok(end); // 0-RTT or Handshake: not readable by an observer
        }
        let dcid_for_keys = self.dcid.get_or_insert_with(|| dcid.clone()).clone();
        let (client, _) = keys::initial_secrets(&dcid_for_keys).map_err(|_| e("key derivation"))?;
        let header_key = Suite::Aes128Gcm
            .header_key(&client)
            .map_err(|_| e("key derivation"))?;
        let packet_key = Suite::Aes128Gcm
            .packet_key(&client)
            .map_err(|_| e("key derivation"))?;
        let mut buf = packet[..end].to_vec();
        if !header_key.unprotect(pn_offset, &mut buf) {
            return Err(e("packet too short for a header protection sample"));
        }
        let pn_len = usize::from(buf[0] & 0x03) + 1;
        let mut packet_number = 0u64;
        for b in &buf[pn_offset..pn_offset + pn_len] {
            packet_number = (packet_number << 8) | u64::from(*b);
        }
        let (header, payload) = buf.split_at_mut(pn_offset + pn_len);
        let plain_len = packet_key
            .open(packet_number, header, payload)
            .map_err(|_| e("payload does not decrypt with the Initial keys"))?;
        let frames = self.read_frames(&payload[..plain_len])?;
        if self.packets.len() < MAX_PACKETS {
            self.packets.push(InitialPacket {
                datagram_len,
                packet_len: end,
                version,
                dcid_len,
                scid_len,
                token_len,
                pn_len,
                packet_number,
                frames,
            });
        }
        Ok(end)
    }

    fn read_frames(&mut self, mut r: &[u8]) -> Result<Vec<String>, InitialError> {
        let e = InitialError;
        let mut frames: Vec<String> = Vec::new();
        let mut padding = 0usize;
        let flush = |frames: &mut Vec<String>, padding: &mut usize| {
            if *padding > 0 {
                frames.push(format!("padding×{padding}"));
                *padding = 0;
            }
        };
        while !r.is_empty() {
            let ty = read_varint(&mut r).ok_or(e("frame type"))?;
            if ty == 0x00 {
                padding += 1;
                continue;
            }
            flush(&mut frames, &mut padding);
            match ty {
                0x01 => frames.push("ping".into()),
                0x02 | 0x03 => {
                    read_varint(&mut r).ok_or(e("ACK"))?;
                    read_varint(&mut r).ok_or(e("ACK"))?;
                    let ranges = read_varint(&mut r).ok_or(e("ACK"))?;
                    read_varint(&mut r).ok_or(e("ACK"))?;
                    for _ in 0..ranges.min(1024) {
                        read_varint(&mut r).ok_or(e("ACK range"))?;
                        read_varint(&mut r).ok_or(e("ACK range"))?;
                    }
                    if ty == 0x03 {
                        for _ in 0..3 {
                            read_varint(&mut r).ok_or(e("ACK ECN"))?;
                        }
                    }
                    frames.push("ack".into());
                }
                0x06 => {
                    let offset = read_varint(&mut r).ok_or(e("CRYPTO offset"))?;
                    let len = read_varint(&mut r).ok_or(e("CRYPTO length"))?;
                    let data = take(
                        &mut r,
                        usize::try_from(len).map_err(|_| e("CRYPTO length"))?,
                    )
                    .ok_or(e("CRYPTO data cut short"))?;
                    let end = offset
                        .checked_add(len)
                        .ok_or(e("CRYPTO offset overflows"))?;
                    if end > MAX_CRYPTO_BYTES || self.crypto_bytes + len > MAX_CRYPTO_BYTES {
                        return Err(e("more CRYPTO data than a ClientHello needs"));
                    }
                    self.crypto_bytes += len;
                    self.crypto.entry(offset).or_insert_with(|| data.to_vec());
                    frames.push(format!("crypto({offset}+{len})"));
                }
                0x1c => {
                    read_varint(&mut r).ok_or(e("CONNECTION_CLOSE"))?;
                    read_varint(&mut r).ok_or(e("CONNECTION_CLOSE"))?;
                    let n = read_varint(&mut r).ok_or(e("CONNECTION_CLOSE"))?;
                    take(&mut r, usize::try_from(n).map_err(|_| e("reason"))?)
                        .ok_or(e("reason"))?;
                    frames.push("connection_close".into());
                }
                _ => return Err(e("a frame type not allowed in an Initial packet")),
            }
        }
        flush(&mut frames, &mut padding);
        Ok(frames)
    }
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn_proto::crypto::{HeaderKey, PacketKey};

    /// An Initial packet as a client would build it, with `frames` as payload.
    fn initial(dcid: &[u8], pn: u8, frames: &[u8], pad_to: usize) -> Vec<u8> {
        let (client, _) = keys::initial_secrets(dcid).expect("keys");
        let hk = Suite::Aes128Gcm.header_key(&client).expect("hp");
        let pk = Suite::Aes128Gcm.packet_key(&client).expect("key");
        let mut payload = frames.to_vec();
        let fixed = 1 + 4 + 1 + dcid.len() + 1 + 1 + 2 + 1;
        while fixed + payload.len() + 16 < pad_to {
            payload.push(0);
        }
        let mut p = vec![0xc0, 0, 0, 0, 1, dcid.len() as u8];
        p.extend_from_slice(dcid);
        p.push(0); // empty SCID
        p.push(0); // no token
        let length = (1 + payload.len() + 16) as u16 | 0x4000;
        p.extend_from_slice(&length.to_be_bytes());
        let pn_offset = p.len();
        p.push(pn);
        let header_len = p.len();
        p.extend_from_slice(&payload);
        p.extend_from_slice(&[0u8; 16]);
        pk.encrypt(u64::from(pn), &mut p, header_len);
        hk.encrypt(pn_offset, &mut p);
        p
    }

    fn crypto(offset: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06, offset, data.len() as u8];
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn a_client_hello_split_and_reordered_across_packets_is_put_back_together() {
        let dcid = [7u8; 8];
        let hello = [1u8, 0, 0, 6, 3, 3, 9, 9, 9, 9];
        let mut first = crypto(5, &hello[5..]);
        first.push(0x01); // PING between the pieces, as Chromium does
        let second = crypto(0, &hello[..5]);
        let mut reader = InitialReader::new();
        reader
            .push_datagram(&initial(&dcid, 0, &first, 1200))
            .expect("first");
        assert_eq!(reader.client_hello(), None, "the start is still missing");
        reader
            .push_datagram(&initial(&dcid, 1, &second, 1200))
            .expect("second");
        assert_eq!(reader.client_hello(), Some(hello.to_vec()));
        assert_eq!(reader.packets.len(), 2);
        assert_eq!(reader.packets[0].datagram_len, 1200);
        assert_eq!(reader.packets[0].dcid_len, 8);
        assert_eq!(
            reader.packets[0].frames[..2],
            ["crypto(5+5)".to_string(), "ping".into()]
        );
        assert!(reader.packets[0].frames[2].starts_with("padding×"));
        assert_eq!(reader.packets[1].packet_number, 1);
    }

    #[test]
    fn hostile_datagrams_are_errors_not_panics() {
        let mut reader = InitialReader::new();
        for bad in [
            &[0xc0u8][..],
            &[0xc0, 0, 0, 0, 1, 21],
            &[0xc0, 0, 0, 0, 1, 0, 0, 0, 0x44],
            &[0xc0, 0, 0, 0, 2, 0, 0, 0, 0],
        ] {
            assert!(reader.push_datagram(bad).is_err(), "{bad:?}");
        }
        let mut tampered = initial(&[1; 8], 0, &crypto(0, &[1, 0, 0, 0]), 1200);
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(reader.push_datagram(&tampered).is_err());
        let huge = [0x06u8, 0x80, 0x01, 0x00, 0x00, 0x01, 0xff];
        let mut reader = InitialReader::new();
        assert!(reader
            .push_datagram(&initial(&[2; 8], 0, &huge, 1200))
            .is_err());
    }
}
