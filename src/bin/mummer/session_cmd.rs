//! `mummer session show` and `mummer cookies import|export`, and the session file that
//! `mummer fetch --session` shares with them.

use std::path::PathBuf;

use mummer::cookies::formats::{self, CookieFormat};
use mummer::{ClientBuilder, Profile, Session, SnapshotKey};

use crate::{CliResult, CookiesCommand, SessionCommand};

/// The key from `--session-key`, else `MUMMER_SESSION_KEY`, else none (plain JSON).
pub fn session_key(arg: Option<&str>) -> CliResult<Option<SnapshotKey>> {
    let from_env = std::env::var("MUMMER_SESSION_KEY").ok();
    match arg.or(from_env.as_deref()) {
        Some(hex) => Ok(Some(SnapshotKey::from_hex(hex)?)),
        None => Ok(None),
    }
}

/// A session snapshot file and its key.
pub struct SessionFile {
    path: PathBuf,
    key: Option<SnapshotKey>,
}

impl SessionFile {
    pub fn new(path: PathBuf, key: Option<SnapshotKey>) -> SessionFile {
        SessionFile { path, key }
    }

    /// Loads the session when the file exists, else makes a new one wearing `profile`.
    pub fn open_or_create(
        &self,
        profile: &str,
        transport: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> CliResult<Session> {
        if self.path.exists() {
            Ok(Session::load(&self.path, self.key.as_ref(), transport)?)
        } else {
            new_session(profile, transport)
        }
    }

    /// Loads an existing session.
    pub fn open(&self) -> CliResult<Session> {
        Ok(Session::load(&self.path, self.key.as_ref(), |b| b)?)
    }

    pub fn save(&self, session: &Session) -> CliResult {
        Ok(session.save(&self.path, self.key.as_ref())?)
    }
}

pub fn session(command: SessionCommand) -> CliResult {
    match command {
        SessionCommand::Show {
            file,
            show_values,
            session_key: key,
        } => {
            let session = SessionFile::new(file, session_key(key.as_deref())?).open()?;
            let snapshot = session.snapshot();
            let stats = session.stats();
            println!("session    {}", stats.id);
            println!("profile    {}", stats.profile);
            println!("identifier {}", stats.identifier);
            println!("created    {} (unix ms)", stats.created_at);
            println!("requests   {}", stats.request_count);
            println!("document   {}", snapshot.document.as_deref().unwrap_or("-"));
            println!("tickets    {}", snapshot.tickets.len());
            println!(
                "cache      {} entries, {} body bytes",
                stats.cache_entry_count, stats.cache_body_bytes
            );
            println!(
                "cookies    {} ({} bytes)",
                stats.cookie_count, stats.cookie_bytes
            );
            for c in session.cookies() {
                let value = if show_values {
                    c.value.clone()
                } else {
                    "(hidden; --show-values)".into()
                };
                let scope = if c.host_only {
                    c.domain.clone()
                } else {
                    format!(".{}", c.domain)
                };
                let mut flags = Vec::new();
                if c.secure {
                    flags.push("Secure".to_string());
                }
                if c.http_only {
                    flags.push("HttpOnly".to_string());
                }
                if let Some(s) = c.same_site {
                    flags.push(format!("SameSite={s:?}"));
                }
                println!(
                    "  {scope}{} {}={} {}",
                    c.path,
                    c.name,
                    value,
                    flags.join(" ")
                );
            }
            Ok(())
        }
    }
}

/// Writes `bytes` to `path` readable by its owner only (0600 on Unix, as snapshots and
/// stores are): exported cookies are credentials. An existing file is narrowed too.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub fn cookies(command: CookiesCommand) -> CliResult {
    match command {
        CookiesCommand::Export {
            session: file,
            format,
            output,
            session_key: key,
        } => {
            let format: CookieFormat = format.parse()?;
            let session = SessionFile::new(file, session_key(key.as_deref())?).open()?;
            let text = formats::write(format, &session.cookies());
            match output {
                Some(path) => write_private(&path, text.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        CookiesCommand::Import {
            session: file,
            format,
            input,
            profile,
            session_key: key,
        } => {
            let format: CookieFormat = format.parse()?;
            let text =
                mummer::files::read_capped_text(&input, mummer::files::MAX_COOKIE_FILE_BYTES)
                    .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
            let records = formats::parse(format, &text)?;
            let file = SessionFile::new(file, session_key(key.as_deref())?);
            let session = file.open_or_create(&profile, |b| b)?;
            let counted = session.import_cookies(&records)?;
            file.save(&session)?;
            eprintln!(
                "imported {} cookies ({} skipped as already expired); the session now holds {}",
                counted.stored,
                counted.expired,
                session.stats().cookie_count
            );
            Ok(())
        }
    }
}

/// A session for `profile` with the given transport, not loaded from anywhere.
fn new_session(
    profile: &str,
    transport: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> CliResult<Session> {
    Ok(Session::builder(Profile::resolve(profile)?)
        .transport(transport)
        .build()?)
}
