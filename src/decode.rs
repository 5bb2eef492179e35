//! Response body decoding (`Content-Encoding`: gzip, deflate, br, zstd) under a size
//! limit, so a decompression bomb is an error and never an out-of-memory.
//!
//! Pure functions over bytes: no I/O, testable without a socket.

use std::io::Read;

use crate::error::{Error, Result};

/// Decodes `body` according to a `Content-Encoding` value (a comma-separated list,
/// applied in order, so decoded in reverse). Unknown codings and `identity` pass through
/// untouched only when they are `identity`; anything else is an error naming it.
///
/// # Errors
///
/// [`Error::is_body_too_large`] when the decoded size would pass `limit` bytes;
/// [`Error::is_decode`] for corrupt data or an unknown coding.
pub fn decode_body(body: Vec<u8>, content_encoding: &str, limit: u64) -> Result<Vec<u8>> {
    let mut data = body;
    for coding in codings(content_encoding)?.iter().rev() {
        data = match coding {
            Coding::Gzip => {
                read_limited(flate2::read::MultiGzDecoder::new(&data[..]), coding, limit)?
            }
            Coding::Deflate => decode_deflate(&data, limit)?,
            Coding::Brotli => {
                read_limited(brotli::Decompressor::new(&data[..], 8192), coding, limit)?
            }
            Coding::Zstd => {
                let decoder = zstd::stream::read::Decoder::new(&data[..])
                    .map_err(|e| Error::decode(format!("zstd: {e}")))?;
                read_limited(decoder, coding, limit)?
            }
        };
    }
    Ok(data)
}

/// A content coding mummer undoes: the one list both the buffered decoder here and
/// the streaming one (`crate::body`) take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    /// `gzip`, `x-gzip` (several members are read as one stream, as browsers do).
    Gzip,
    /// `deflate`: zlib-wrapped or raw.
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

impl std::fmt::Display for Coding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        })
    }
}

/// The codings a `Content-Encoding` value lists, in the order applied (`identity`
/// and empty members left out).
///
/// # Errors
///
/// [`Error::is_decode`] naming a coding mummer does not know.
pub(crate) fn codings(content_encoding: &str) -> Result<Vec<Coding>> {
    content_encoding
        .split(',')
        .map(|c| c.trim())
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        .map(|c| match c.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Ok(Coding::Gzip),
            "deflate" => Ok(Coding::Deflate),
            "br" => Ok(Coding::Brotli),
            "zstd" => Ok(Coding::Zstd),
            other => Err(Error::decode(format!(
                "unknown Content-Encoding `{other}`; fetch with decoding disabled to get the raw bytes"
            ))),
        })
        .collect()
}

/// Whether a `deflate` body is zlib-wrapped (RFC 9110 §8.4.1.2 says it is; some
/// servers send raw deflate, and browsers accept both), from its first two bytes.
pub(crate) fn looks_zlib(data: &[u8]) -> bool {
    data.len() >= 2
        && data[0] & 0x0f == 8
        && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0
}

/// `deflate` is meant to be zlib-wrapped (RFC 9110 §8.4.1.2), but some servers send raw
/// deflate, and browsers accept both.
fn decode_deflate(data: &[u8], limit: u64) -> Result<Vec<u8>> {
    if looks_zlib(data) {
        read_limited(
            flate2::read::ZlibDecoder::new(data),
            &Coding::Deflate,
            limit,
        )
    } else {
        read_limited(
            flate2::read::DeflateDecoder::new(data),
            &Coding::Deflate,
            limit,
        )
    }
}

fn read_limited(reader: impl Read, coding: &Coding, limit: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Error::decode(format!("{coding}: {e}")))?;
    if out.len() as u64 > limit {
        return Err(Error::body_too_large(format!(
            "decoded body ({coding}) is larger than the {limit}-byte limit; this looks like a decompression bomb (raise the limit with max_decoded_body if it is genuine)"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trips_every_coding() {
        let text = b"hello mummer".repeat(100);
        assert_eq!(decode_body(gzip(&text), "gzip", 1 << 20).unwrap(), text);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&text).unwrap();
        assert_eq!(
            decode_body(z.finish().unwrap(), "deflate", 1 << 20).unwrap(),
            text
        );
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&text).unwrap();
        assert_eq!(
            decode_body(raw.finish().unwrap(), "deflate", 1 << 20).unwrap(),
            text
        );
        let mut br = Vec::new();
        brotli::BrotliCompress(&mut &text[..], &mut br, &Default::default()).unwrap();
        assert_eq!(decode_body(br, "br", 1 << 20).unwrap(), text);
        let zs = zstd::encode_all(&text[..], 3).unwrap();
        assert_eq!(decode_body(zs, "zstd", 1 << 20).unwrap(), text);
        // stacked codings are undone in reverse order
        let both = zstd::encode_all(&gzip(&text)[..], 3).unwrap();
        assert_eq!(decode_body(both, "gzip, zstd", 1 << 20).unwrap(), text);
    }

    #[test]
    fn bomb_is_refused_not_inflated() {
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100 << 10);
        let err = decode_body(bomb, "gzip", 1 << 20).unwrap_err();
        assert!(err.is_body_too_large(), "{err}");
    }

    #[test]
    fn corrupt_and_unknown_are_decode_errors() {
        assert!(decode_body(b"not gzip".to_vec(), "gzip", 100)
            .unwrap_err()
            .is_decode());
        assert!(decode_body(b"x".to_vec(), "compress", 100)
            .unwrap_err()
            .is_decode());
        assert_eq!(decode_body(b"x".to_vec(), "identity", 100).unwrap(), b"x");
    }
}
