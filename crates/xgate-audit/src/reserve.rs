//! The trail's reserve of disk space: a file of `[audit] reserve_bytes` allocated beside the
//! database (`<path>-reserve`), given back to the file system the moment a commit finds the
//! disk full, so that the entries of exchanges already forwarded still have room while new
//! exchanges are refused; allocated again before the trail serves again.
//!
//! The file's blocks are allocated (`posix_fallocate`), not merely a length: a sparse file
//! would hold no space. It holds nothing else and is never read. The edge: blocking file I/O,
//! on the writer thread only.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The reserve file and whether it holds its bytes now.
#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
    bytes: u64,
    held: bool,
}

impl Reserve {
    /// The reserve of the database at `database`: `bytes` (0 turns it off). Nothing is
    /// allocated until [`Reserve::fill`].
    pub fn new(database: &Path, bytes: u64) -> Reserve {
        let mut name = database.as_os_str().to_owned();
        name.push("-reserve");
        Reserve {
            path: PathBuf::from(name),
            bytes,
            held: false,
        }
    }

    /// Whether the reserve holds its bytes (always, when it is off).
    pub fn is_held(&self) -> bool {
        self.bytes == 0 || self.held
    }

    /// Allocates the reserve's bytes, unless it holds them already (and its file is still
    /// there, whole). Fails when the file system lacks the space; nothing is left half
    /// allocated then.
    pub fn fill(&mut self) -> io::Result<()> {
        if self.bytes == 0 {
            return Ok(());
        }
        let whole = std::fs::metadata(&self.path).is_ok_and(|meta| meta.len() >= self.bytes);
        if self.held && whole {
            return Ok(());
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)?;
        match allocate(&file, self.bytes) {
            Ok(()) => {
                self.held = true;
                Ok(())
            }
            Err(error) => {
                drop(file);
                if let Err(error) = std::fs::remove_file(&self.path) {
                    tracing::debug!(%error, "the reserve's partial file stays until the next fill");
                }
                self.held = false;
                Err(error)
            }
        }
    }

    /// Gives the reserve's space back to the file system; whether it held any.
    pub fn release(&mut self) -> bool {
        if self.bytes == 0 {
            return false;
        }
        let released = std::fs::remove_file(&self.path).is_ok();
        let held = std::mem::replace(&mut self.held, false);
        held || released
    }
}

/// Allocates `bytes` of `file`'s blocks.
#[cfg(unix)]
#[allow(unsafe_code)] // posix_fallocate: see the SAFETY comment
fn allocate(file: &File, bytes: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let length = libc::off_t::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "reserve too large"))?;
    // SAFETY: `posix_fallocate` only reads its arguments; the descriptor is open for writing
    // and stays open (borrowed from `file`) for the call.
    let result = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, length) };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    Ok(())
}

/// Elsewhere a length is the best there is (it may hold no space).
#[cfg(not(unix))]
fn allocate(file: &File, bytes: u64) -> io::Result<()> {
    file.set_len(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_is_allocated_released_and_allocated_again() {
        let folder = tempfile::tempdir().unwrap();
        let database = folder.path().join("audit.db");
        let mut reserve = Reserve::new(&database, 64 * 1024);
        assert!(!reserve.is_held());
        reserve.fill().unwrap();
        assert!(reserve.is_held());
        let path = folder.path().join("audit.db-reserve");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 64 * 1024);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // Allocated blocks, not a sparse length.
            assert!(meta.blocks() * 512 >= 64 * 1024, "{}", meta.blocks());
        }
        assert!(reserve.release());
        assert!(!path.exists());
        assert!(!reserve.is_held());
        assert!(!reserve.release());
        // Deleted behind its back, it is allocated again.
        reserve.fill().unwrap();
        std::fs::remove_file(&path).unwrap();
        reserve.fill().unwrap();
        assert!(path.exists());
    }

    #[test]
    fn a_reserve_of_nothing_is_always_held_and_never_a_file() {
        let folder = tempfile::tempdir().unwrap();
        let mut reserve = Reserve::new(&folder.path().join("audit.db"), 0);
        assert!(reserve.is_held());
        reserve.fill().unwrap();
        assert!(!reserve.release());
        assert!(!folder.path().join("audit.db-reserve").exists());
    }
}
