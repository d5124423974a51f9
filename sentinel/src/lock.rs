//! One daemon per pin directory and per database: `flock` locks taken before anything is touched.
//!
//! - Database: `<DB_PATH>.lock` next to the database, holding the owner's pid (for humans; the
//!   lock itself is what counts). A lock file rather than a lock on the database: SQLite uses
//!   POSIX locks on the database file itself, which must not be mixed with ours.
//! - Pin directory: bpffs holds only pins and directories, no regular files, so the directory's
//!   own file descriptor is locked. The lock then lives on the bpffs inode that every daemon
//!   sharing those pins sees, also across containers that mount the host's bpffs (a lock file
//!   under `/run` would be private to each container's `/run`).
//!
//! A second daemon finds the lock taken and stops with the owner's pid, read from
//! `/proc/locks` (shown in the reader's pid namespace; unknown when the owner is outside it).
//! The kernel drops a `flock` when its process dies, kill -9 included: no stale lock to clean.
//!
//! Knows files and `flock`; knows nothing of capture, SQLite or HTTP.

use std::{
    fs::File,
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};

/// A lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "another instance is running on {what} {path} (pid {}); stop it first, or give this one \
         its own DB_PATH and BPF_PIN_DIR",
        pid.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    )]
    Busy {
        /// `the database` or `the pin directory`.
        what: &'static str,
        /// The locked path.
        path: PathBuf,
        /// The owner, when visible.
        pid: Option<u32>,
    },
    /// The lock file or directory could not be opened or locked.
    #[error("{action} {path} failed")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Both locks; released when dropped (and by the kernel when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    _db: Flock<File>,
    _pins: Option<Flock<File>>,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LockError + 'a {
    move |source| LockError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Takes the database lock (`<db>.lock`) and the pin directory lock (the directory itself,
/// mounting bpffs and creating the directory as the eBPF backend would). When the pin directory
/// cannot be prepared (no bpffs, no permission) nothing can be pinned there either: only the
/// database is locked, and the eBPF backend reports the real error when it tries.
///
/// `pin_dir` is `None` when no backend that pins can run (`BACKEND=afpacket`): then bpffs is left
/// alone.
pub fn acquire(db_path: &Path, pin_dir: Option<&Path>) -> Result<InstanceLock, LockError> {
    let db_lock = lock_path(db_path);
    if let Some(dir) = db_lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&db_lock)
        .map_err(io("opening", &db_lock))?;
    let mut db = lock(file, "the database", db_path, &db_lock)?;
    // The pid, for humans reading the file; the flock is the lock.
    let _ = db.set_len(0);
    let _ = writeln!(*db, "{}", std::process::id());
    let pins = match pin_dir {
        Some(dir) => lock_dir(dir)?,
        None => None,
    };
    Ok(InstanceLock {
        _db: db,
        _pins: pins,
    })
}

/// `<db>.lock`.
pub fn lock_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn lock_dir(dir: &Path) -> Result<Option<Flock<File>>, LockError> {
    // bpffs may not be mounted yet: a directory created before the mount would be hidden by it,
    // so prepare the directory exactly as the eBPF backend does (mount when missing, create).
    if let Err(e) = crate::capture::ebpf::pins::prepare(dir) {
        tracing::debug!(dir = %dir.display(), error = %crate::error_chain(&e), "pin directory unusable; not locking it");
        return Ok(None);
    }
    let file = File::open(dir).map_err(io("opening", dir))?;
    lock(file, "the pin directory", dir, dir).map(Some)
}

fn lock(
    file: File,
    what: &'static str,
    shown: &Path,
    locked: &Path,
) -> Result<Flock<File>, LockError> {
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(held),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => Err(LockError::Busy {
            what,
            path: shown.to_owned(),
            pid: file.metadata().ok().and_then(|m| holder(&m)),
        }),
        Err((_, errno)) => Err(LockError::Io {
            action: "locking",
            path: locked.to_owned(),
            source: errno.into(),
        }),
    }
}

/// The pid holding a `flock` on the file with this metadata, from `/proc/locks`.
fn holder(meta: &std::fs::Metadata) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&text, meta.dev(), meta.ino())
}

/// Parses `/proc/locks` lines such as `1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF`.
fn holder_in(text: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        // FLOCK ADVISORY WRITE <pid> <dev:ino>; a waiter's line starts with "->" and is skipped.
        let (pid, id) = (fields.get(at + 3)?, fields.get(at + 4)?);
        (*id == want && !line.contains("->"))
            .then(|| pid.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_with_the_owner_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("sub/traffic.db");
        let file = |p: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .expect("open")
        };
        std::fs::create_dir_all(dir.path().join("sub")).expect("dir");
        let path = lock_path(&db);
        let first = lock(file(&path), "the database", &db, &path).expect("first lock");
        // flock locks belong to the open file description: a second open in this process
        // conflicts like another process would.
        let second = lock(file(&path), "the database", &db, &path);
        match second {
            // The owner's pid comes from /proc/locks; when it is named, it is ours (a busy
            // machine has shown a read that named nobody: the message then says "unknown").
            Err(LockError::Busy { pid, .. }) => {
                assert!(pid.is_none_or(|p| p == std::process::id()), "{pid:?}")
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        assert!(lock(file(&path), "the database", &db, &path).is_ok());
        let message = LockError::Busy {
            what: "the database",
            path: db.clone(),
            pid: Some(42),
        }
        .to_string();
        assert!(message.contains("another instance") && message.contains("pid 42"));
    }

    #[test]
    fn proc_locks_lines_are_parsed() {
        let text = "1: FLOCK  ADVISORY  WRITE 4242 00:1f:12345 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 9999 00:1f:12345 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 77 08:01:12345 0 EOF\n";
        let dev = nix::sys::stat::makedev(0, 0x1f);
        assert_eq!(holder_in(text, dev, 12345), Some(4242));
        assert_eq!(holder_in(text, dev, 1), None);
        assert_eq!(holder_in(text, nix::sys::stat::makedev(8, 1), 12345), None);
    }
}
