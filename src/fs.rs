//! Durable writes: [`write_atomic`] replaces a file so that readers see the old content
//! or the new, never a mix, and [`sweep_interrupted_saves`] removes the temporary files
//! of saves a crash interrupted. Both know the temporary name, `.NAME.tmp-PID-RANDOM`
//! in the file's own directory; session files and the file store write through here.
//! (Bounded reads of the files users name are `crate::files`.)

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that readers see the old content or the new, never a
/// mix: temporary file in the same directory (mode 0600), fsync, `before_rename` (a
/// test hook), rename, fsync of the directory. A failure removes the temporary file.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}-{:08x}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        before_rename(&tmp)?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files a save interrupted by a crash left in `dir` (only those of
/// `name` when given): `.NAME.tmp-PID-RANDOM` whose process is gone, or older than an
/// hour (a save takes milliseconds; the age catches a reused process id). A save in
/// progress, by this process or a live other one, is left alone. Returns how many were
/// removed.
pub(crate) fn sweep_interrupted_saves(dir: &Path, name: Option<&str>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some((saved, rest)) = file_name
            .strip_prefix('.')
            .and_then(|f| f.rsplit_once(".tmp-"))
        else {
            continue;
        };
        if name.is_some_and(|n| n != saved) {
            continue;
        }
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let gone = !Path::new("/proc").join(pid.to_string()).exists();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        let alive_here = pid == std::process::id() && !old;
        if (gone || old) && !alive_here && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed temporary files of saves interrupted by a crash");
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_of_dead_saves_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // No process has id 2^32-1; this process is alive.
        let dead = dir.path().join(".s.json.tmp-4294967295-0000abcd");
        let other = dir.path().join(".t.json.tmp-4294967295-0000abcd");
        let mine = dir
            .path()
            .join(format!(".s.json.tmp-{}-00001234", std::process::id()));
        let unrelated = dir.path().join(".s.json.bak");
        for p in [&dead, &other, &mine, &unrelated] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(sweep_interrupted_saves(dir.path(), Some("s.json")), 1);
        assert!(!dead.exists() && other.exists() && mine.exists() && unrelated.exists());
        assert_eq!(sweep_interrupted_saves(dir.path(), None), 1);
        assert!(!other.exists() && mine.exists());
    }

    #[test]
    fn a_crash_before_rename_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write_atomic(&path, b"old", |_| Ok(())).unwrap();
        let err = write_atomic(&path, b"new content", |tmp| {
            assert_eq!(
                std::fs::read(tmp).unwrap(),
                b"new content",
                "complete before the rename"
            );
            Err(std::io::Error::other("simulated crash"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "simulated crash");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
