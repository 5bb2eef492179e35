//! Reading the files users name, bounded: every profile, snapshot, cookie file, CA
//! bundle, proxies file and tokens file mummer reads goes through [`read_capped`], so a
//! path that points at `/dev/zero`, a FIFO or a multi-gigabyte file stops with an error
//! naming the limit instead of reading until memory runs out.
//!
//! The limits are far above any legitimate file of each kind (a Chromium profile is
//! about 20 KB, a system CA bundle about 200 KB) and are listed in `docs/security.md`.

use std::io::Read;
use std::path::Path;

/// Largest profile JSON file read.
pub const MAX_PROFILE_FILE_BYTES: u64 = 1 << 20;
/// Largest CA bundle (`--cacert`) read.
pub const MAX_CA_FILE_BYTES: u64 = 16 << 20;
/// Largest cookie file (Netscape, Playwright, CDP, JSON) read.
pub const MAX_COOKIE_FILE_BYTES: u64 = 64 << 20;
/// Largest configuration file (proxies, tenant tokens, certificates and keys) read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 << 20;
/// Largest session snapshot read, from a file or a file store: above the biggest a
/// session can write (its cache holds at most `MAX_CACHE_BODY_BYTES` of bodies).
pub const MAX_SNAPSHOT_FILE_BYTES: u64 = 2 << 30;

/// Reads all of `path`, refusing anything but a regular file and anything over `limit`
/// bytes.
///
/// # Errors
///
/// The I/O error of opening or reading; `InvalidInput` for a device, FIFO, socket or
/// directory; `FileTooLarge` for a file over `limit` (judged by what is read, not by
/// its metadata, so a file growing while it is read is caught too). The text never
/// includes the file's content.
pub fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    let mut out = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// [`read_capped`] for a text file: UTF-8 is required.
///
/// # Errors
///
/// Those of [`read_capped`], and `InvalidData` for a file that is not UTF-8.
pub fn read_capped_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_capped(path, limit)?).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

fn too_large(limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::FileTooLarge,
        format!("larger than the {limit}-byte limit for this kind of file"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        for p in ["/dev/zero", "/dev/urandom", "/"] {
            let err = read_capped(Path::new(p), 1 << 20).unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{p}: {err}");
        }
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [b'x'; 10]).unwrap();
        assert_eq!(read_capped(&p, 10).unwrap().len(), 10);
        let err = read_capped(&p, 9).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("9-byte limit"), "{err}");
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"ok\xff").unwrap();
        let err = read_capped_text(&p, 10).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
