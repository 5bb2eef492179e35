//! Store URLs, as the CLI and the examples take them: `file:DIR` for a [`FileStore`],
//! `redis://HOST:PORT/DB` (or `rediss://`, `redis+unix://`) for a [`RedisStore`].

use std::sync::Arc;

#[cfg(feature = "redis")]
use super::RedisStore;
use super::{FileStore, SessionStore};
use crate::error::{Error, Result};

/// Opens the store `url` names; `namespace` applies to Redis (a file store is its own
/// namespace: use another directory).
///
/// # Errors
///
/// [`Error::is_invalid_input`] for an unknown scheme, a missing directory name or a
/// malformed Redis URL; [`Error::is_store_unavailable`] when the directory cannot be
/// created.
pub fn open_store(url: &str, namespace: &str) -> Result<Arc<dyn SessionStore>> {
    if let Some(dir) = url.strip_prefix("file:") {
        let dir = dir.strip_prefix("//").unwrap_or(dir);
        if dir.is_empty() {
            return Err(Error::invalid_input(
                "store `file:` needs a directory: file:DIR (for example file:./sessions)",
            ));
        }
        return Ok(Arc::new(FileStore::open(dir)?));
    }
    if url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://")
    {
        #[cfg(feature = "redis")]
        return Ok(Arc::new(RedisStore::open(url, namespace)?));
        #[cfg(not(feature = "redis"))]
        {
            let _ = namespace;
            return Err(Error::invalid_input(format!(
                "store `{url}`: this mummer was built without the `redis` feature"
            )));
        }
    }
    Err(Error::invalid_input(format!(
        "unknown store `{url}`: use file:DIR or redis://HOST:PORT/DB"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn store_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let store = open_store(&format!("file:{}", path.display()), "ignored").unwrap();
        assert_eq!(store.describe(), format!("file:{}", path.display()));
        assert!(path.is_dir());
        #[cfg(feature = "redis")]
        {
            let store = open_store("redis://127.0.0.1:6390/2", "crawl").unwrap();
            assert_eq!(
                store.describe(),
                "redis://127.0.0.1:6390/2 (namespace crawl)"
            );
        }
        #[cfg(not(feature = "redis"))]
        assert!(open_store("redis://127.0.0.1:6390/2", "crawl")
            .err()
            .is_some_and(|e| e.to_string().contains("`redis` feature")));
        for bad in ["file:", "s3://bucket", "127.0.0.1:6379"] {
            let err = open_store(bad, "ns").err().unwrap();
            assert!(err.is_invalid_input(), "{bad}: {err}");
        }
    }
}
