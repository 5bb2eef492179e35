//! HTTP/3 as the inspector reads it: frames (RFC 9114 section 7), SETTINGS in wire
//! order, and QPACK field sections (RFC 9204 section 4.5) decoded with the
//! representation of every field line kept: static reference or literal, which name
//! reference, Huffman or not. That is what a fingerprinting server sees and what a
//! general-purpose HTTP/3 server hides.
//!
//! The inspector advertises a QPACK dynamic table of zero (the default), so a field
//! section may only use the static table and literals; a dynamic reference is an error.
//! Pure functions, bounded by the caller's buffer.

use serde::Serialize;

/// What the QUIC layer showed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QuicReport {
    /// The client's Initial packets, in arrival order.
    pub initial_packets: Vec<crate::quic::initial::InitialPacket>,
    /// Why the ClientHello could not be read, when it could not.
    pub client_hello_error: Option<String>,
}

/// The HTTP/3 side of a connection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Http3Report {
    /// SETTINGS on the client's control stream, in wire order: `(id, value, name)`.
    pub settings: Vec<(u64, u64, String)>,
    /// Frames on the control stream, in order.
    pub control_frames: Vec<String>,
    /// The client's unidirectional stream types, in the order they were opened.
    pub uni_streams: Vec<String>,
    /// Every request's field section, in the order the requests arrived.
    pub requests: Vec<Http3Request>,
}

/// One request on a bidirectional stream.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Http3Request {
    /// QUIC stream id.
    pub stream_id: u64,
    /// Field lines in wire order, with their QPACK representation.
    pub fields: Vec<FieldLine>,
    /// Frame types on the stream, in order.
    pub frames: Vec<String>,
}

/// A frame type as the inspector names it.
pub fn frame_name(ty: u64) -> String {
    match ty {
        0x00 => "DATA".into(),
        0x01 => "HEADERS".into(),
        0x03 => "CANCEL_PUSH".into(),
        0x04 => "SETTINGS".into(),
        0x05 => "PUSH_PROMISE".into(),
        0x07 => "GOAWAY".into(),
        0x0d => "MAX_PUSH_ID".into(),
        0x0f0700 | 0x0f0701 => "PRIORITY_UPDATE".into(),
        t if is_reserved(t) => format!("GREASE(0x{t:x})"),
        t => format!("0x{t:x}"),
    }
}

/// Whether `v` is a reserved (GREASE) frame, stream or setting value: 0x1f × N + 0x21.
pub fn is_reserved(v: u64) -> bool {
    v >= 0x21 && (v - 0x21).is_multiple_of(0x1f)
}

/// A SETTINGS identifier by name.
pub fn setting_name(id: u64) -> String {
    match id {
        0x01 => "QPACK_MAX_TABLE_CAPACITY".into(),
        0x06 => "MAX_FIELD_SECTION_SIZE".into(),
        0x07 => "QPACK_BLOCKED_STREAMS".into(),
        0x08 => "ENABLE_CONNECT_PROTOCOL".into(),
        0x33 => "H3_DATAGRAM".into(),
        0x2b603742 => "ENABLE_WEBTRANSPORT".into(),
        t if is_reserved(t) => "GREASE".into(),
        t => format!("0x{t:x}"),
    }
}

/// One field line as it was encoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldLine {
    /// Field name.
    pub name: String,
    /// Field value.
    pub value: String,
    /// `indexed` (static name and value), `name-ref` (static name, literal value) or
    /// `literal` (both literal).
    pub representation: &'static str,
    /// The static table index, for `indexed` and `name-ref`.
    pub static_index: Option<u64>,
    /// The `N` bit: never to be put in a dynamic table by an intermediary.
    pub never_indexed: bool,
    /// Whether the literal name was Huffman-coded (`literal` only).
    pub huffman_name: Option<bool>,
    /// Whether the literal value was Huffman-coded (`name-ref` and `literal`).
    pub huffman_value: Option<bool>,
}

/// Why a frame or field section could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H3Error(pub &'static str);

impl std::fmt::Display for H3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP/3: {}", self.0)
    }
}

impl std::error::Error for H3Error {}

/// Reads a QUIC varint from the front of `buf`.
pub fn varint(buf: &mut &[u8]) -> Result<u64, H3Error> {
    crate::quic::params::read_varint(buf).ok_or(H3Error("truncated varint"))
}

/// Splits one complete frame off the front of `buf`: `Ok(None)` when more bytes are
/// needed, an error when a frame is longer than `max`.
pub fn split_frame<'a>(buf: &mut &'a [u8], max: usize) -> Result<Option<(u64, &'a [u8])>, H3Error> {
    let mut r = *buf;
    let Some(ty) = crate::quic::params::read_varint(&mut r) else {
        return Ok(None);
    };
    let Some(len) = crate::quic::params::read_varint(&mut r) else {
        return Ok(None);
    };
    let len = usize::try_from(len).map_err(|_| H3Error("frame length"))?;
    if len > max {
        return Err(H3Error("frame longer than the inspector reads"));
    }
    if r.len() < len {
        return Ok(None);
    }
    let (payload, rest) = r.split_at(len);
    *buf = rest;
    Ok(Some((ty, payload)))
}

/// A SETTINGS payload as `(id, value)` in wire order.
pub fn parse_settings(mut payload: &[u8]) -> Result<Vec<(u64, u64)>, H3Error> {
    let mut out = Vec::new();
    while !payload.is_empty() {
        let id = varint(&mut payload)?;
        let value = varint(&mut payload)?;
        if out.len() >= 256 {
            return Err(H3Error("too many settings"));
        }
        out.push((id, value));
    }
    Ok(out)
}

/// An N-bit prefix integer (RFC 7541 section 5.1) whose first byte is `first`.
fn prefix_int(first: u8, bits: u32, r: &mut &[u8]) -> Result<u64, H3Error> {
    let max = (1u64 << bits) - 1;
    let mut value = u64::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let (&b, rest) = r.split_first().ok_or(H3Error("truncated integer"))?;
        *r = rest;
        if shift > 56 {
            return Err(H3Error("integer overflows"));
        }
        value += u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

/// A string literal: `(text, huffman)`; its length prefix has `bits` bits after the
/// H flag at `h_mask` in `first`.
fn string(first: u8, h_mask: u8, bits: u32, r: &mut &[u8]) -> Result<(String, bool), H3Error> {
    let huffman = first & h_mask != 0;
    let len = usize::try_from(prefix_int(first, bits, r)?).map_err(|_| H3Error("string length"))?;
    if r.len() < len {
        return Err(H3Error("truncated string"));
    }
    let (raw, rest) = r.split_at(len);
    *r = rest;
    let bytes = if huffman {
        loona_hpack::huffman::HuffmanDecoder::new()
            .decode(raw)
            .map_err(|_| H3Error("bad Huffman string"))?
    } else {
        raw.to_vec()
    };
    Ok((String::from_utf8_lossy(&bytes).into_owned(), huffman))
}

fn next_byte(r: &mut &[u8]) -> Result<u8, H3Error> {
    let (&b, rest) = r.split_first().ok_or(H3Error("truncated field line"))?;
    *r = rest;
    Ok(b)
}

fn static_entry(index: u64) -> Result<(&'static str, &'static str), H3Error> {
    usize::try_from(index)
        .ok()
        .and_then(|i| STATIC_TABLE.get(i))
        .copied()
        .ok_or(H3Error("static table index out of range"))
}

/// Decodes a QPACK field section that uses no dynamic table.
pub fn decode_field_section(mut r: &[u8]) -> Result<Vec<FieldLine>, H3Error> {
    let first = next_byte(&mut r)?;
    let required_insert_count = prefix_int(first, 8, &mut r)?;
    let first = next_byte(&mut r)?;
    prefix_int(first, 7, &mut r)?; // delta base: meaningless without a dynamic table
    if required_insert_count != 0 {
        return Err(H3Error(
            "a dynamic table reference, with a table capacity of 0",
        ));
    }
    let mut lines = Vec::new();
    while !r.is_empty() {
        if lines.len() >= 1000 {
            return Err(H3Error("more than 1000 field lines"));
        }
        let b = next_byte(&mut r)?;
        let line = if b & 0x80 != 0 {
            // Indexed field line: 1 T index(6).
            if b & 0x40 == 0 {
                return Err(H3Error(
                    "a dynamic table reference, with a table capacity of 0",
                ));
            }
            let index = prefix_int(b, 6, &mut r)?;
            let (name, value) = static_entry(index)?;
            FieldLine {
                name: name.into(),
                value: value.into(),
                representation: "indexed",
                static_index: Some(index),
                never_indexed: false,
                huffman_name: None,
                huffman_value: None,
            }
        } else if b & 0x40 != 0 {
            // Literal with name reference: 01 N T index(4).
            if b & 0x10 == 0 {
                return Err(H3Error(
                    "a dynamic table reference, with a table capacity of 0",
                ));
            }
            let index = prefix_int(b, 4, &mut r)?;
            let (name, _) = static_entry(index)?;
            let vb = next_byte(&mut r)?;
            let (value, huffman) = string(vb, 0x80, 7, &mut r)?;
            FieldLine {
                name: name.into(),
                value,
                representation: "name-ref",
                static_index: Some(index),
                never_indexed: b & 0x20 != 0,
                huffman_name: None,
                huffman_value: Some(huffman),
            }
        } else if b & 0x20 != 0 {
            // Literal with literal name: 001 N H len(3).
            let (name, huffman_name) = string(b, 0x08, 3, &mut r)?;
            let vb = next_byte(&mut r)?;
            let (value, huffman_value) = string(vb, 0x80, 7, &mut r)?;
            FieldLine {
                name,
                value,
                representation: "literal",
                static_index: None,
                never_indexed: b & 0x10 != 0,
                huffman_name: Some(huffman_name),
                huffman_value: Some(huffman_value),
            }
        } else {
            return Err(H3Error(
                "a post-base (dynamic) reference, with a table capacity of 0",
            ));
        };
        lines.push(line);
    }
    Ok(lines)
}

/// The QPACK static table (RFC 9204 Appendix A).
pub const STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ),
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_references_literals_and_huffman_are_told_apart() {
        // Prefix 0,0; :method GET (17); :authority name-ref "a" plain; literal
        // name "x-a" plain, value Huffman "www.example.com" (RFC 7541 C.4.1).
        let mut block = vec![
            0x00,
            0x00,
            0xc0 | 17,
            0x50,
            0x01,
            b'a',
            0x23,
            b'x',
            b'-',
            b'a',
        ];
        let huff = hex::decode("f1e3c2e5f23a6ba0ab90f4ff").expect("hex");
        block.push(0x80 | huff.len() as u8);
        block.extend_from_slice(&huff);
        let lines = decode_field_section(&block).expect("decodes");
        assert_eq!(lines.len(), 3);
        assert_eq!(
            (lines[0].name.as_str(), lines[0].value.as_str()),
            (":method", "GET")
        );
        assert_eq!(lines[0].representation, "indexed");
        assert_eq!(lines[1].representation, "name-ref");
        assert_eq!(lines[1].huffman_value, Some(false));
        assert_eq!(lines[2].name, "x-a");
        assert_eq!(lines[2].value, "www.example.com");
        assert_eq!(lines[2].huffman_value, Some(true));
        assert_eq!(lines[2].huffman_name, Some(false));
    }

    #[test]
    fn dynamic_references_and_truncation_are_errors() {
        assert!(decode_field_section(&[0x01, 0x00]).is_err());
        assert!(decode_field_section(&[0x00, 0x00, 0x80]).is_err());
        assert!(decode_field_section(&[0x00, 0x00, 0xff]).is_err());
        assert!(decode_field_section(&[
            0x00, 0x00, 0x5f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
        ])
        .is_err());
        assert!(decode_field_section(&[0x00, 0x00, 0x51, 0x05, b'a']).is_err());
        assert!(decode_field_section(&[]).is_err());
    }

    #[test]
    fn frames_split_only_when_whole() {
        let mut buf: &[u8] = &[0x04, 0x02, 0x01, 0x00, 0x01];
        assert_eq!(
            split_frame(&mut buf, 100),
            Ok(Some((0x04, &[0x01, 0x00][..])))
        );
        assert_eq!(split_frame(&mut buf, 100), Ok(None));
        let mut long: &[u8] = &[0x00, 0x44, 0x00];
        assert!(split_frame(&mut long, 100).is_err());
        assert_eq!(
            parse_settings(&[0x01, 0x00, 0x06, 0x44, 0x00]),
            Ok(vec![(1, 0), (6, 1024)])
        );
        assert!(is_reserved(0x21) && is_reserved(0x21 + 0x1f) && !is_reserved(0x22));
    }
}
