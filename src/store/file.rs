//! The embedded session store: one directory on the local disk.
//!
//! Layout, all files mode 0600:
//!
//! ```text
//! DIR/<id>.session   "mummer-store 1 <version>\n" then the snapshot bytes
//! DIR/<id>.lease     the lease holder's token and expiry, locked by the holder
//! DIR/.store.lock    taken for the few milliseconds of a save or delete
//! ```
//!
//! Saves are atomic (temporary file, fsync, rename, fsync of the directory) and check the
//! version under the store lock, so two processes on one machine cannot interleave. A
//! lease is an exclusive OS lock (`flock`) on the lease file, held by the owning process
//! for as long as the lease lives: a second process (or a second acquire in the same
//! process) is refused, and the OS frees the lock when the holder dies, even by SIGKILL,
//! so crash recovery needs no TTL. The TTL is written into the file for inspection.
//!
//! File locks are blocking system calls; every operation runs on tokio's blocking pool.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{check_id, new_token, Lease, SessionStore, StoredSession};
use crate::error::{Error, Result};
use crate::fs::write_atomic;

/// The first bytes of a stored session file, before the version.
const HEADER_PREFIX: &str = "mummer-store 1 ";

/// Sessions in one local directory.
#[derive(Clone)]
pub struct FileStore {
    dir: Arc<PathBuf>,
    /// Lease files this process holds locked, by token.
    held: Arc<Mutex<HashMap<String, File>>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("dir", &self.dir).finish()
    }
}

impl FileStore {
    /// A store in `dir`, created (mode 0700) if missing.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`] when the directory cannot be created or is not a
    /// directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore> {
        let dir = dir.as_ref().to_path_buf();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(&dir)
            .map_err(|e| Error::store_unavailable(format!("file:{}", dir.display()), e))?;
        if !dir.is_dir() {
            return Err(Error::store_unavailable(
                format!("file:{}", dir.display()),
                "not a directory",
            ));
        }
        crate::fs::sweep_interrupted_saves(&dir, None);
        Ok(FileStore {
            dir: Arc::new(dir),
            held: Arc::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn session_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.session"))
    }

    fn lease_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.lease"))
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> Error {
        Error::store_unavailable(self.describe(), e)
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&FileStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| self.unavailable(format!("the store task failed: {e}")))?
    }

    /// Holds the store-wide lock while `f` runs.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock =
            open_private(&self.dir.join(".store.lock"), false).map_err(|e| self.unavailable(e))?;
        lock.lock().map_err(|e| self.unavailable(e))?;
        let out = f();
        drop(lock);
        out
    }
}

/// Opens (creating, mode 0600) a file for reading and writing.
fn open_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// How many times [`lock_lease_file`] starts over on a lease file that was replaced.
const LEASE_LOCK_ATTEMPTS: usize = 8;

/// Why a lease file could not be locked.
enum LeaseLock {
    /// Another holder has it.
    Held(Error),
    /// The file system failed.
    Io(std::io::Error),
}

/// Opens (creating) and locks the lease file at `path` for session `id`.
///
/// A released lease on a never-saved session has its file removed while locked (see
/// `release`), so the file this call opened may be unlinked by the time it holds the
/// lock: locking an unlinked file leases nothing, because the next caller creates a
/// new file at the path. So after locking, the path must still name the locked file
/// (same device and inode); if not, it starts over on the new file.
/// Gives up after [`LEASE_LOCK_ATTEMPTS`] replacements in a row.
fn lock_lease_file(path: &Path, id: &str) -> std::result::Result<File, LeaseLock> {
    for _ in 0..LEASE_LOCK_ATTEMPTS {
        let mut file = open_private(path, false).map_err(LeaseLock::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = holder
                    .lines()
                    .find_map(|l| l.strip_prefix("pid "))
                    .unwrap_or("?")
                    .to_string();
                return Err(LeaseLock::Held(Error::lease_held(
                    id,
                    format!("locked by process {pid}"),
                )));
            }
            Err(TryLockError::Error(e)) => return Err(LeaseLock::Io(e)),
        }
        if still_at(&file, path).map_err(LeaseLock::Io)? {
            return Ok(file);
        }
    }
    Err(LeaseLock::Io(std::io::Error::other(format!(
        "{} kept being replaced while it was locked",
        path.display()
    ))))
}

/// Whether `path` still names the open `file` (it was not removed or replaced).
fn still_at(file: &File, path: &Path) -> std::io::Result<bool> {
    let open = file.metadata()?;
    let named = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(open.dev() == named.dev() && open.ino() == named.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (open, named);
        Ok(true)
    }
}

/// Splits a stored file into its version and the snapshot bytes.
fn parse_stored(path: &Path, data: Vec<u8>) -> Result<StoredSession> {
    let corrupt = |why: &str| Error::snapshot(path.display(), why);
    let end = data
        .iter()
        .position(|&b| b == b'\n')
        .filter(|&n| n < 64)
        .ok_or_else(|| corrupt("not a mummer store file (no header line)"))?;
    let header = std::str::from_utf8(&data[..end])
        .map_err(|_| corrupt("not a mummer store file (header is not text)"))?;
    let version = header
        .strip_prefix(HEADER_PREFIX)
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| corrupt("not a mummer store file (bad header)"))?;
    let mut data = data;
    data.drain(..=end);
    Ok(StoredSession {
        version,
        bytes: data,
    })
}

/// The version of the file at `path`, reading only its header: 0 when there is none,
/// and when the file is not a store file (it is overwritten, with a warning).
fn stored_version(path: &Path) -> Result<u64> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::store_unavailable(path.display(), e)),
    };
    let mut head = Vec::with_capacity(64);
    file.take(64)
        .read_to_end(&mut head)
        .map_err(|e| Error::store_unavailable(path.display(), e))?;
    match parse_stored(path, head) {
        Ok(stored) => Ok(stored.version),
        Err(e) => {
            tracing::warn!(error = %e, "overwriting a corrupt session file");
            Ok(0)
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn write_lease(file: &mut File, token: &str, ttl: Duration) -> std::io::Result<()> {
    // A TTL no clock can hold (a caller's 1e19 s) expires at the end of time, not in a
    // panic.
    let expires = SystemTime::now().checked_add(ttl).map_or(u64::MAX, unix_ms);
    file.set_len(0)?;
    let mut w = &*file;
    std::io::Seek::rewind(&mut w)?;
    writeln!(
        w,
        "token {token}\nexpires_ms {expires}\npid {}",
        std::process::id()
    )?;
    file.sync_data()
}

#[async_trait]
impl SessionStore for FileStore {
    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }

    async fn load(&self, id: &str) -> Result<Option<StoredSession>> {
        check_id(id)?;
        let id = id.to_string();
        self.blocking(move |s| {
            let path = s.session_path(&id);
            match crate::files::read_capped(&path, crate::files::MAX_SNAPSHOT_FILE_BYTES) {
                Ok(data) => parse_stored(&path, data).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(s.unavailable(format!("cannot read {}: {e}", path.display()))),
            }
        })
        .await
    }

    async fn save(&self, id: &str, version: u64, bytes: &[u8]) -> Result<()> {
        check_id(id)?;
        let (id, bytes) = (id.to_string(), bytes.to_vec());
        self.blocking(move |s| {
            let path = s.session_path(&id);
            s.locked(|| {
                let stored = stored_version(&path)?;
                if stored >= version {
                    return Err(Error::store_conflict(&id, stored, version));
                }
                let mut data = Vec::with_capacity(bytes.len() + 32);
                data.extend_from_slice(format!("{HEADER_PREFIX}{version}\n").as_bytes());
                data.extend_from_slice(&bytes);
                write_atomic(&path, &data, |_| Ok(()))
                    .map_err(|e| s.unavailable(format!("cannot write {}: {e}", path.display())))
            })
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let id = id.to_string();
        self.blocking(move |s| {
            s.locked(|| {
                for path in [s.session_path(&id), s.lease_path(&id)] {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(
                                s.unavailable(format!("cannot remove {}: {e}", path.display()))
                            )
                        }
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn list(&self) -> Result<Vec<String>> {
        self.blocking(|s| {
            let entries = std::fs::read_dir(s.dir.as_path()).map_err(|e| s.unavailable(e))?;
            let mut ids = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| s.unavailable(e))?;
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".session")) else {
                    continue;
                };
                if check_id(id).is_ok() {
                    ids.push(id.to_string());
                } else {
                    tracing::warn!(file = %entry.path().display(), "skipping a file whose name is not a session id");
                }
            }
            Ok(ids)
        })
        .await
    }

    async fn acquire(&self, id: &str, ttl: Duration) -> Result<Lease> {
        check_id(id)?;
        let id = id.to_string();
        self.blocking(move |s| {
            let path = s.lease_path(&id);
            let mut file = lock_lease_file(&path, &id).map_err(|e| match e {
                LeaseLock::Held(e) => e,
                LeaseLock::Io(e) => s.unavailable(e),
            })?;
            let token = new_token();
            write_lease(&mut file, &token, ttl).map_err(|e| s.unavailable(e))?;
            s.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(token.clone(), file);
            Ok(Lease { id, token })
        })
        .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool> {
        let lease = lease.clone();
        self.blocking(move |s| {
            let mut held = s.held.lock().unwrap_or_else(|p| p.into_inner());
            let Some(file) = held.get_mut(&lease.token) else {
                return Ok(false);
            };
            write_lease(file, &lease.token, ttl).map_err(|e| s.unavailable(e))?;
            Ok(true)
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let lease = lease.clone();
        self.blocking(move |s| {
            let file = s
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&lease.token);
            let Some(file) = file else {
                return Ok(false);
            };
            // A lease on a session that was never saved (a checkout of an unknown
            // id, a creation that failed) leaves no file behind: removed while still
            // locked, which `lock_lease_file` makes safe for a concurrent acquirer.
            if !s.session_path(&lease.id).exists() {
                let _ = std::fs::remove_file(s.lease_path(&lease.id));
            }
            // Closing the file releases the lock.
            drop(file);
            Ok(true)
        })
        .await
    }
}
