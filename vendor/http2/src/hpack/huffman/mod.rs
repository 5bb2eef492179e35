mod table;

use self::table::{DECODE_TABLE, ENCODE_TABLE};
use crate::hpack::DecoderError;

use bytes::{BufMut, BytesMut};

// Constructed in the generated `table.rs` file
struct Decoder {
    state: u8,
    maybe_eos: bool,
}

// These flags must match the ones in genhuff.rs

const MAYBE_EOS: u8 = 1;
const DECODED: u8 = 2;
const ERROR: u8 = 4;

pub fn decode(src: &[u8], buf: &mut BytesMut) -> Result<BytesMut, DecoderError> {
    let mut decoder = Decoder::new();

    // Max compression ratio is >= 0.5
    buf.reserve(src.len() << 1);

    for b in src {
        if let Some(b) = decoder.decode4(b >> 4)? {
            buf.put_u8(b);
        }

        if let Some(b) = decoder.decode4(b & 0xf)? {
            buf.put_u8(b);
        }
    }

    if !decoder.is_final() {
        return Err(DecoderError::InvalidHuffmanCode);
    }

    Ok(buf.split())
}

/// Octets the Huffman coding of `src` takes, padding included (mummer patch).
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| ENCODE_TABLE[b as usize].0).sum();
    bits.div_ceil(8)
}

pub fn encode(src: &[u8], dst: &mut BytesMut) {
    // mummer patch (vendor/README.md): bits gather in a u64 and leave 32 at a time,
    // with the space reserved once, instead of one `put_u8` (a capacity check each)
    // per output byte. Same output.
    //
    // `pending` holds the last `n` bits not yet written (n < 32 between bytes). A code
    // is at most 30 bits, so `pending << nbits` keeps everything that is still needed;
    // bits above `n` are already written and either fall off the top or are cut by the
    // `as u32` below.
    dst.reserve(src.len() + 4);
    let mut pending: u64 = 0;
    let mut n: usize = 0;
    for &b in src {
        let (nbits, code) = ENCODE_TABLE[b as usize];
        pending = (pending << nbits) | code;
        n += nbits;
        if n >= 32 {
            n -= 32;
            dst.put_u32((pending >> n) as u32);
        }
    }
    if n > 0 {
        // Pad to a whole byte with the most significant bits of EOS (all ones).
        let pad = (8 - n % 8) % 8;
        pending = (pending << pad) | ((1 << pad) - 1);
        n += pad;
        while n > 0 {
            n -= 8;
            dst.put_u8((pending >> n) as u8);
        }
    }
}

impl Decoder {
    fn new() -> Decoder {
        Decoder {
            state: 0,
            maybe_eos: false,
        }
    }

    // Decodes 4 bits
    fn decode4(&mut self, input: u8) -> Result<Option<u8>, DecoderError> {
        // (next-state, byte, flags)
        let (next, byte, flags) = DECODE_TABLE[self.state as usize][input as usize];

        if flags & ERROR == ERROR {
            // Data followed the EOS marker
            return Err(DecoderError::InvalidHuffmanCode);
        }

        let mut ret = None;

        if flags & DECODED == DECODED {
            ret = Some(byte);
        }

        self.state = next;
        self.maybe_eos = flags & MAYBE_EOS == MAYBE_EOS;

        Ok(ret)
    }

    fn is_final(&self) -> bool {
        self.state == 0 || self.maybe_eos
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn decode(src: &[u8]) -> Result<BytesMut, DecoderError> {
        let mut buf = BytesMut::new();
        super::decode(src, &mut buf)
    }

    #[test]
    fn decode_single_byte() {
        assert_eq!("o", decode(&[0b00111111]).unwrap());
        assert_eq!("0", decode(&[7]).unwrap());
        assert_eq!("A", decode(&[(0x21 << 2) + 3]).unwrap());
    }

    #[test]
    fn single_char_multi_byte() {
        assert_eq!("#", decode(&[255, 160 + 15]).unwrap());
        assert_eq!("$", decode(&[255, 200 + 7]).unwrap());
        assert_eq!("\x0a", decode(&[255, 255, 255, 240 + 3]).unwrap());
    }

    #[test]
    fn multi_char() {
        assert_eq!("!0", decode(&[254, 1]).unwrap());
        assert_eq!(" !", decode(&[0b01010011, 0b11111000]).unwrap());
    }

    #[test]
    fn encode_single_byte() {
        let mut dst = BytesMut::with_capacity(1);

        encode(b"o", &mut dst);
        assert_eq!(&dst[..], &[0b00111111]);

        dst.clear();
        encode(b"0", &mut dst);
        assert_eq!(&dst[..], &[7]);

        dst.clear();
        encode(b"A", &mut dst);
        assert_eq!(&dst[..], &[(0x21 << 2) + 3]);
    }

    #[test]
    fn encode_decode_str() {
        const DATA: &[&str] = &[
            "hello world",
            ":method",
            ":scheme",
            ":authority",
            "yahoo.co.jp",
            "GET",
            "http",
            ":path",
            "/images/top/sp2/cmn/logo-ns-130528.png",
            "example.com",
            "hpack-test",
            "xxxxxxx1",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.8; rv:16.0) Gecko/20100101 Firefox/16.0",
            "accept",
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "cookie",
            "B=76j09a189a6h4&b=3&s=0b",
            "TE",
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Morbi non bibendum libero. \
             Etiam ultrices lorem ut.",
        ];

        for s in DATA {
            let mut dst = BytesMut::with_capacity(s.len());

            encode(s.as_bytes(), &mut dst);

            let decoded = decode(&dst).unwrap();

            assert_eq!(&decoded[..], s.as_bytes());
        }
    }

    /// The encoder against a plain bit-at-a-time one, on every byte value and on
    /// strings long enough to cross many 32-bit writes.
    #[test]
    fn encode_matches_a_bit_by_bit_reference() {
        fn reference(src: &[u8]) -> Vec<u8> {
            let mut bits = Vec::new();
            for &b in src {
                let (nbits, code) = ENCODE_TABLE[b as usize];
                for i in (0..nbits).rev() {
                    bits.push((code >> i) & 1 == 1);
                }
            }
            while bits.len() % 8 != 0 {
                bits.push(true);
            }
            bits.chunks(8)
                .map(|byte| byte.iter().fold(0u8, |acc, &bit| (acc << 1) | bit as u8))
                .collect()
        }
        let mut inputs: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        inputs.push((0..=255u8).collect());
        inputs.push((0..=255u8).rev().cycle().take(5000).collect());
        inputs.push(b"session=abc; theme=dark; ".repeat(60));
        for len in 0..70 {
            inputs.push((0..len).map(|i| (i * 37 % 256) as u8).collect());
        }
        for input in inputs {
            let mut dst = BytesMut::new();
            encode(&input, &mut dst);
            assert_eq!(&dst[..], &reference(&input)[..], "input {input:?}");
            assert_eq!(&decode(&dst).unwrap()[..], &input[..]);
        }
    }

    #[test]
    fn encode_decode_u8() {
        const DATA: &[&[u8]] = &[b"\0", b"\0\0\0", b"\0\x01\x02\x03\x04\x05", b"\xFF\xF8"];

        for s in DATA {
            let mut dst = BytesMut::with_capacity(s.len());

            encode(s, &mut dst);

            let decoded = decode(&dst).unwrap();

            assert_eq!(&decoded[..], &s[..]);
        }
    }
}
