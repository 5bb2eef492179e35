//! The client's QUIC transport parameters as bytes on the wire, as the profile says.
//!
//! quinn decides the values (from the [`quinn::TransportConfig`] the profile sets) and
//! writes them in an order of its own with a GREASE parameter; a browser sends its own
//! set (Chromium: `version_information` with a GREASE version, `google_connection_options`,
//! no `min_ack_delay`), shuffled anew for every connection. [`ParamsLayout::encode`]
//! takes quinn's encoding apart and writes exactly the profile's list: quinn's value for
//! each listed id, the profile's bytes for an extra one, then shuffled when the profile
//! says so. An extra value replaces quinn's only where that is harmless (Chromium's
//! `max_datagram_frame_size` of 65536 where quinn caps at 65535: no datagram can be
//! larger than a packet); flow-control values always stay quinn's, so what the server is
//! promised is what quinn enforces.

use quinn_proto::transport_parameters::TransportParameters;

/// Where one parameter goes in the profile's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamSlot {
    /// A parameter by its id, when quinn wrote it.
    Id(u64),
    /// The GREASE parameter quinn writes (a reserved id, 31 × N + 27).
    Grease,
    /// A parameter written with exactly these bytes (replacing quinn's, if any).
    Extra(u64, Vec<u8>),
    /// `version_information` (RFC 9368): chosen version 1, available versions 1 and a
    /// reserved (GREASE) version, in random order, as Chromium sends it.
    VersionInformation,
}

/// How the transport parameters are laid out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamsLayout {
    /// Exactly what is sent, in this order unless shuffled; empty keeps quinn's list.
    pub order: Vec<ParamSlot>,
    /// Shuffle the order for every connection.
    pub shuffle: bool,
}

/// Whether `id` is a reserved (GREASE) transport parameter id (RFC 9000 section 18.1).
pub fn is_grease_id(id: u64) -> bool {
    id >= 27 && (id - 27).is_multiple_of(31)
}

impl ParamsLayout {
    /// The parameters quinn would send, written in this layout.
    pub fn encode(&self, params: &TransportParameters) -> Vec<u8> {
        let mut raw = Vec::new();
        params.write(&mut raw);
        if self.order.is_empty() {
            return raw;
        }
        let Some(mut fields) = split(&raw) else {
            // quinn's own encoding always parses; keep it as written if it ever does not.
            return raw;
        };
        let mut chosen: Vec<(u64, Vec<u8>)> = Vec::with_capacity(self.order.len());
        for slot in &self.order {
            match slot {
                ParamSlot::Id(id) => {
                    if let Some(pos) = fields.iter().position(|(i, _)| i == id) {
                        let (id, value) = fields.remove(pos);
                        chosen.push((id, value.to_vec()));
                    }
                }
                ParamSlot::Grease => {
                    if let Some(pos) = fields.iter().position(|(i, _)| is_grease_id(*i)) {
                        let (id, value) = fields.remove(pos);
                        chosen.push((id, value.to_vec()));
                    }
                }
                ParamSlot::Extra(id, value) => {
                    fields.retain(|(i, _)| i != id);
                    chosen.push((*id, value.clone()));
                }
                ParamSlot::VersionInformation => {
                    fields.retain(|(i, _)| *i != 0x11);
                    chosen.push((0x11, version_information()));
                }
            }
        }
        if self.shuffle {
            use rand::seq::SliceRandom;
            chosen.shuffle(&mut rand::rng());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        for (id, value) in &chosen {
            put(&mut out, *id, value);
        }
        out
    }
}

/// Chosen version 1, then the available versions: 1 and a reserved `0x?a?a?a?a`
/// version (RFC 9000 section 15), in random order.
fn version_information() -> Vec<u8> {
    let grease = (rand::random::<u32>() & 0xf0f0_f0f0) | 0x0a0a_0a0a;
    let mut available = [super::keys::QUIC_V1, grease];
    if rand::random::<bool>() {
        available.swap(0, 1);
    }
    let mut out = super::keys::QUIC_V1.to_be_bytes().to_vec();
    for v in available {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// Splits an encoded parameter list into `(id, value)` pairs; `None` when malformed.
pub fn split(mut raw: &[u8]) -> Option<Vec<(u64, &[u8])>> {
    let mut fields = Vec::new();
    while !raw.is_empty() {
        let id = read_varint(&mut raw)?;
        let len = usize::try_from(read_varint(&mut raw)?).ok()?;
        if raw.len() < len {
            return None;
        }
        let (value, rest) = raw.split_at(len);
        fields.push((id, value));
        raw = rest;
    }
    Some(fields)
}

/// Reads one QUIC variable-length integer (RFC 9000 section 16).
pub fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut value = u64::from(first & 0x3f);
    for b in &buf[1..len] {
        value = (value << 8) | u64::from(*b);
    }
    *buf = &buf[len..];
    Some(value)
}

/// Writes one QUIC variable-length integer; values above 2^62 - 1 are clamped (no
/// parameter id or length comes near it).
pub fn write_varint(out: &mut Vec<u8>, value: u64) {
    if value < 1 << 6 {
        out.push(value as u8);
    } else if value < 1 << 14 {
        out.extend_from_slice(&((value as u16) | 0x4000).to_be_bytes());
    } else if value < 1 << 30 {
        out.extend_from_slice(&((value as u32) | 0x8000_0000).to_be_bytes());
    } else {
        let v = value.min((1 << 62) - 1);
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

fn put(out: &mut Vec<u8>, id: u64, value: &[u8]) {
    write_varint(out, id);
    write_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        for v in [
            0u64,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            (1 << 62) - 1,
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            let mut slice = &out[..];
            assert_eq!(read_varint(&mut slice), Some(v));
            assert!(slice.is_empty());
        }
        assert_eq!(read_varint(&mut &[0x40][..]), None);
        assert_eq!(read_varint(&mut &[][..]), None);
    }

    #[test]
    fn the_profile_order_is_kept_and_nothing_is_lost() {
        let mut raw = Vec::new();
        put(&mut raw, 0x04, &[0x80, 0, 0x40, 0]);
        put(&mut raw, 27 + 31 * 5, &[1, 2]);
        put(&mut raw, 0x01, &[0x67, 0x10]);
        put(&mut raw, 0x0f, &[]);
        let fields = split(&raw).expect("parses");
        assert_eq!(fields.len(), 4);
        assert!(is_grease_id(27 + 31 * 5));
        assert!(!is_grease_id(0x0f));
        assert_eq!(split(&[0x01, 0x05, 0x00]), None);
    }
}
