//! The client's QUIC transport parameters as bytes on the wire, in the profile's order.
//!
//! quinn decides the values (from the [`quinn::TransportConfig`] the profile sets) and
//! writes them in an order of its own with a GREASE parameter; a browser has its own
//! order and sends parameters quinn does not know (Chromium's `version_information`,
//! `google_connection_options`, …). [`ParamsLayout::encode`] takes quinn's encoding
//! apart and writes it again: the profile's ids first in its order (a parameter quinn
//! did not write is skipped, an extra one the profile carries is written as given), the
//! rest after them in quinn's order. Values are never changed here, so what the server
//! is promised is what quinn enforces.

use quinn_proto::transport_parameters::TransportParameters;

/// Where one parameter goes in the profile's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamSlot {
    /// A parameter by its id, when quinn wrote it.
    Id(u64),
    /// The GREASE parameter quinn writes (a reserved id, 31 × N + 27).
    Grease,
    /// A parameter quinn does not know, written with exactly these bytes.
    Extra(u64, Vec<u8>),
}

/// How the transport parameters are laid out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamsLayout {
    /// The profile's order; empty keeps quinn's.
    pub order: Vec<ParamSlot>,
}

/// Whether `id` is a reserved (GREASE) transport parameter id (RFC 9000 section 18.1).
pub fn is_grease_id(id: u64) -> bool {
    id >= 27 && (id - 27) % 31 == 0
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
        let mut out = Vec::with_capacity(raw.len() + 64);
        for slot in &self.order {
            match slot {
                ParamSlot::Id(id) => {
                    if let Some(pos) = fields.iter().position(|(i, _)| i == id) {
                        let (id, value) = fields.remove(pos);
                        put(&mut out, id, value);
                    }
                }
                ParamSlot::Grease => {
                    if let Some(pos) = fields.iter().position(|(i, _)| is_grease_id(*i)) {
                        let (id, value) = fields.remove(pos);
                        put(&mut out, id, value);
                    }
                }
                ParamSlot::Extra(id, value) => {
                    fields.retain(|(i, _)| i != id);
                    put(&mut out, *id, value);
                }
            }
        }
        for (id, value) in fields {
            put(&mut out, id, value);
        }
        out
    }
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
