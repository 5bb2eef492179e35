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
