//! HTTP/2 frame reading for the inspector: the client preface, SETTINGS (in wire
//! order), WINDOW_UPDATE, PRIORITY and HEADERS with their priority block, and the
//! decoded header list, plus the Akamai fingerprint string built from them.
//!
//! Pure parsing over byte slices; the server in [`super::server`] feeds it.

use serde::Serialize;

/// The 24-byte client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types we look at.
pub mod kind {
    /// DATA
    pub const DATA: u8 = 0;
    /// HEADERS
    pub const HEADERS: u8 = 1;
    /// PRIORITY
    pub const PRIORITY: u8 = 2;
    /// RST_STREAM
    pub const RST_STREAM: u8 = 3;
    /// SETTINGS
    pub const SETTINGS: u8 = 4;
    /// PING
    pub const PING: u8 = 6;
    /// GOAWAY
    pub const GOAWAY: u8 = 7;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u8 = 8;
    /// CONTINUATION
    pub const CONTINUATION: u8 = 9;
}

/// One frame as read from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Frame type.
    pub kind: u8,
    /// Flags byte.
    pub flags: u8,
    /// Stream id (R bit cleared).
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Length of the frame header.
pub const FRAME_HEADER_LEN: usize = 9;

/// Reads the frame length from a 9-byte header.
pub fn frame_len(header: &[u8; FRAME_HEADER_LEN]) -> usize {
    (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2])
}

/// The HEADERS priority block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PriorityBlock {
    /// E flag.
    pub exclusive: bool,
    /// Stream dependency.
    pub depends_on: u32,
    /// Weight as browsers document it (wire value + 1).
    pub weight: u16,
}

/// One request's HEADERS frame, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HeadersFrame {
    /// Stream id.
    pub stream: u32,
    /// Flag names in wire order of bits (END_STREAM, END_HEADERS, PADDED, PRIORITY).
    pub flags: Vec<&'static str>,
    /// Priority block, if the PRIORITY flag was set.
    pub priority: Option<PriorityBlock>,
    /// Header list in wire order, pseudo-headers included.
    pub headers: Vec<(String, String)>,
    /// How each of those fields was written, in the same order.
    pub representations: Vec<Representation>,
    /// Dynamic table size updates at the start of the block.
    pub table_size_updates: Vec<u64>,
}

/// How one header field was represented in its HPACK block (RFC 7541 section 6), in
/// the words of the reference captures: `kind` is `indexed`,
/// `literal_incremental_indexing`, `literal_without_indexing` or
/// `literal_never_indexed`; `name` is `static_index` or `dynamic_index` for an indexed
/// field, `indexed_name` or `literal_name` for a literal; `huffman` is whether the
/// literal value was Huffman-coded (`None` for an indexed field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Representation {
    /// The representation.
    pub kind: &'static str,
    /// Whether the value was Huffman-coded (literals only).
    pub huffman: Option<bool>,
    /// Where the name (or the whole field) came from.
    pub name: &'static str,
}

/// Entries in the HPACK static table (RFC 7541 appendix A).
const STATIC_ENTRIES: u64 = 61;

/// Walks an HPACK header block and says how each field was represented, without
/// decoding it (the decoder gives the values): the field representations in order,
/// and the dynamic table size updates.
///
/// # Errors
///
/// A message when the block is truncated or an integer is too long.
pub fn representations(block: &[u8]) -> Result<(Vec<Representation>, Vec<u64>), &'static str> {
    let mut p = block;
    let mut fields = Vec::new();
    let mut updates = Vec::new();
    while let Some(&first) = p.first() {
        if first & 0x80 != 0 {
            let (index, rest) = hpack_int(p, 7)?;
            p = rest;
            fields.push(Representation {
                kind: "indexed",
                huffman: None,
                name: if index <= STATIC_ENTRIES {
                    "static_index"
                } else {
                    "dynamic_index"
                },
            });
            continue;
        }
        if first & 0xe0 == 0x20 {
            let (size, rest) = hpack_int(p, 5)?;
            p = rest;
            updates.push(size);
            continue;
        }
        let (kind, prefix) = match first {
            b if b & 0xc0 == 0x40 => ("literal_incremental_indexing", 6),
            b if b & 0xf0 == 0x10 => ("literal_never_indexed", 4),
            _ => ("literal_without_indexing", 4),
        };
        let (name_index, rest) = hpack_int(p, prefix)?;
        p = rest;
        let name = if name_index == 0 {
            let (_, rest) = hpack_string(p)?;
            p = rest;
            "literal_name"
        } else {
            "indexed_name"
        };
        let (huffman, rest) = hpack_string(p)?;
        p = rest;
        fields.push(Representation {
            kind,
            huffman: Some(huffman),
            name,
        });
    }
    Ok((fields, updates))
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1), and what follows.
fn hpack_int(p: &[u8], n: u32) -> Result<(u64, &[u8]), &'static str> {
    let (&first, mut rest) = p.split_first().ok_or("HPACK block truncated")?;
    let max = (1u64 << n) - 1;
    let mut value = u64::from(first) & max;
    if value < max {
        return Ok((value, rest));
    }
    // At most 5 continuation octets: 35 bits, more than any length or index here.
    for shift in (0..35).step_by(7) {
        let (&b, more) = rest.split_first().ok_or("HPACK integer truncated")?;
        rest = more;
        value += u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((value, rest));
        }
    }
    Err("HPACK integer too long")
}

/// An HPACK string literal: whether it is Huffman-coded, and what follows it.
fn hpack_string(p: &[u8]) -> Result<(bool, &[u8]), &'static str> {
    let huffman = p.first().ok_or("HPACK block truncated")? & 0x80 != 0;
    let (len, rest) = hpack_int(p, 7)?;
    let len = usize::try_from(len).map_err(|_| "HPACK string too long")?;
    if len > rest.len() {
        return Err("HPACK string truncated");
    }
    Ok((huffman, &rest[len..]))
}

/// Splits a HEADERS payload into its priority block and header block fragment.
///
/// # Errors
///
/// A message when padding or the priority block does not fit.
pub fn split_headers_payload(
    flags: u8,
    payload: &[u8],
) -> Result<(Option<PriorityBlock>, &[u8]), &'static str> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & 0x8 != 0 {
        let (&n, rest) = p
            .split_first()
            .ok_or("padded HEADERS without a pad length")?;
        pad = usize::from(n);
        p = rest;
    }
    let mut priority = None;
    if flags & 0x20 != 0 {
        if p.len() < 5 {
            return Err("HEADERS priority block is truncated");
        }
        let dep = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        priority = Some(PriorityBlock {
            exclusive: dep & 0x8000_0000 != 0,
            depends_on: dep & 0x7fff_ffff,
            weight: u16::from(p[4]) + 1,
        });
        p = &p[5..];
    }
    if pad > p.len() {
        return Err("HEADERS padding is longer than the frame");
    }
    Ok((priority, &p[..p.len() - pad]))
}

/// Names of the flags set on a HEADERS frame.
pub fn headers_flag_names(flags: u8) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (bit, name) in [
        (0x1, "END_STREAM"),
        (0x4, "END_HEADERS"),
        (0x8, "PADDED"),
        (0x20, "PRIORITY"),
    ] {
        if flags & bit != 0 {
            out.push(name);
        }
    }
    out
}

/// Parses a SETTINGS payload into (id, value) pairs in wire order.
pub fn parse_settings(payload: &[u8]) -> Vec<(u16, u32)> {
    payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

/// The Akamai HTTP/2 fingerprint: `SETTINGS|WINDOW_UPDATE|PRIORITY|pseudo-header order`.
pub fn akamai(
    settings: &[(u16, u32)],
    window_update: u32,
    priority_frames: &[String],
    first: Option<&HeadersFrame>,
) -> String {
    let s = settings
        .iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(";");
    let p = if priority_frames.is_empty() {
        "0".to_string()
    } else {
        priority_frames.join(",")
    };
    let pseudo = first
        .map(|h| {
            h.headers
                .iter()
                .filter(|(n, _)| n.starts_with(':'))
                .map(|(n, _)| n.chars().nth(1).map(String::from).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format!("{s}|{window_update}|{p}|{pseudo}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn kinds(block: &str) -> Vec<(&'static str, Option<bool>, &'static str)> {
        let (fields, _) = representations(&hex(block)).expect("a valid block");
        fields.iter().map(|r| (r.kind, r.huffman, r.name)).collect()
    }

    /// The examples of RFC 7541 appendix C, one per representation.
    #[test]
    fn representations_are_read_as_rfc_7541_writes_them() {
        assert_eq!(
            kinds("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"),
            [("literal_incremental_indexing", Some(false), "literal_name")],
            "C.2.1"
        );
        assert_eq!(
            kinds("040c 2f73 616d 706c 652f 7061 7468"),
            [("literal_without_indexing", Some(false), "indexed_name")],
            "C.2.2"
        );
        assert_eq!(
            kinds("1008 7061 7373 776f 7264 0673 6563 7265 74"),
            [("literal_never_indexed", Some(false), "literal_name")],
            "C.2.3"
        );
        assert_eq!(
            kinds("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
            [
                ("indexed", None, "static_index"),
                ("indexed", None, "static_index"),
                ("indexed", None, "static_index"),
                ("literal_incremental_indexing", Some(true), "indexed_name"),
            ],
            "C.4.1, Huffman"
        );
        assert_eq!(
            kinds("8286 84be 5808 6e6f 2d63 6163 6865"),
            [
                ("indexed", None, "static_index"),
                ("indexed", None, "static_index"),
                ("indexed", None, "static_index"),
                ("indexed", None, "dynamic_index"),
                ("literal_incremental_indexing", Some(false), "indexed_name"),
            ],
            "C.3.2"
        );
        let (fields, updates) = representations(&hex("3fe1 1f 82")).expect("valid");
        assert_eq!((fields.len(), updates), (1, vec![4096]), "a size update");
    }

    #[test]
    fn broken_blocks_are_errors_not_panics() {
        for bad in ["40", "400a 6375", "0f", "ff ff ff ff ff ff ff", "4085 6162"] {
            assert!(representations(&hex(bad)).is_err(), "{bad}");
        }
        assert_eq!(representations(&[]).expect("empty"), (vec![], vec![]));
    }

    #[test]
    fn headers_payload_with_priority_and_padding() {
        let mut payload = vec![2u8];
        payload.extend_from_slice(&(0x8000_0000u32 | 3).to_be_bytes());
        payload.push(255);
        payload.extend_from_slice(b"abc");
        payload.extend_from_slice(&[0, 0]);
        let (prio, block) = split_headers_payload(0x8 | 0x20 | 0x4, &payload).unwrap();
        assert_eq!(
            prio,
            Some(PriorityBlock {
                exclusive: true,
                depends_on: 3,
                weight: 256
            })
        );
        assert_eq!(block, b"abc");
        assert!(split_headers_payload(0x20, &[0, 0]).is_err());
        assert!(split_headers_payload(0x8, &[9, 1]).is_err());
    }

    #[test]
    fn akamai_string() {
        let h = HeadersFrame {
            stream: 1,
            flags: vec![],
            priority: None,
            headers: vec![
                (":method".into(), "GET".into()),
                (":authority".into(), "a".into()),
                (":scheme".into(), "https".into()),
                (":path".into(), "/".into()),
            ],
            representations: vec![],
            table_size_updates: vec![],
        };
        assert_eq!(
            akamai(
                &[(1, 65536), (2, 0), (4, 6291456), (6, 262144)],
                15663105,
                &[],
                Some(&h)
            ),
            "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
        );
    }
}
