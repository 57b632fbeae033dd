//! The writer lock: an exclusive `flock` on `.fswal.lock`, held for the store's life.

use super::*;

/// How many times `flock` is retried when a signal interrupts it.
pub(super) const LOCK_ATTEMPTS_MAX: u32 = 64;

/// Takes an exclusive `flock` on `lock`, the open lock file at `lock_path` in `dir`,
/// without waiting. The lock is released when the file is closed.
pub(super) fn lock_exclusive(lock: &File, dir: &Path, lock_path: &Path) -> Result<(), FileError> {
    for _ in 0..LOCK_ATTEMPTS_MAX {
        // SAFETY: `flock` only reads its integer arguments; the descriptor comes from
        // `lock`, which is borrowed for the whole call, so it is open.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EWOULDBLOCK) => {
                return Err(FileError::custom(
                    "lock",
                    dir,
                    None,
                    io::ErrorKind::WouldBlock,
                    format!(
                        "another process is writing to this WAL (lock held on {})",
                        lock_path.display()
                    ),
                ));
            }
            _ => return Err(FileError::new("lock", lock_path, None, e)),
        }
    }
    Err(FileError::custom(
        "lock",
        lock_path,
        None,
        io::ErrorKind::Interrupted,
        "interrupted by signals too many times",
    ))
}
