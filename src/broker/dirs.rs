//! The broker's directories (the socket's and the data directory), checked
//! before anything is put in them, and the files in them, opened through
//! the checked directory's descriptor.
//!
//! A directory another user can write lets that user plant what the broker
//! then trusts: a symlink where a lock file goes (which the broker would
//! truncate), a socket of their own at the path clients use. So each
//! directory must be the broker's own (owned by its effective uid), a real
//! directory (not a symlink), and writable by nobody else; the broker
//! creates it that way when it is missing and refuses to start otherwise.
//! Files in it are reached through the directory's descriptor: renaming
//! the directory afterwards changes nothing.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};

/// Why a directory or a file in it is not used.
#[derive(Debug, thiserror::Error)]
#[error("refusing {}: {problem}", path.display())]
pub struct Unsafe {
    /// What was refused.
    pub path: PathBuf,
    /// What is wrong with it, and what to do.
    pub problem: String,
}

/// A checked directory.
#[derive(Debug)]
pub struct Dir {
    path: PathBuf,
    fd: OwnedFd,
}

fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

impl Dir {
    /// Opens `path` as a directory of ours, creating it (and its missing
    /// parents) with `mode` if it does not exist.
    ///
    /// # Errors
    /// [`io::Error`] if it cannot be created or opened (a symlink is
    /// refused: `ELOOP`), wrapped with [`Unsafe`] if it is not a directory
    /// of ours or others can write it.
    pub fn open(path: &Path, create_mode: Option<u32>) -> io::Result<Dir> {
        if let Some(mode) = create_mode {
            if std::fs::symlink_metadata(path).is_err() {
                // A race with someone creating it first is caught below.
                let _ = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(path);
            }
        }
        let fd = rustix::fs::openat(
            CWD,
            path,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
            Mode::empty(),
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) if link => {
                    unsafe_dir(path, "it is a symbolic link; give a real directory")
                }
                Some(libc::ENOTDIR) => unsafe_dir(path, "it is not a directory"),
                _ => io::Error::new(e.kind(), format!("opening {}: {e}", path.display())),
            }
        })?;
        let st = rustix::fs::fstat(&fd)?;
        if st.st_uid != me() {
            return Err(unsafe_dir(
                path,
                &format!(
                    "it belongs to uid {}, not to this broker's uid {}: another user may have planted it; remove it, or choose a directory of your own",
                    st.st_uid,
                    me()
                ),
            ));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(unsafe_dir(
                path,
                &format!(
                    "its mode {:o} lets others write it: chmod go-w it, or choose a directory of your own",
                    st.st_mode & 0o7777
                ),
            ));
        }
        Ok(Dir {
            path: path.to_owned(),
            fd,
        })
    }

    /// The directory's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path to `name` in this directory that goes through its
    /// descriptor (for calls that take a path, such as `bind`).
    pub fn via_fd(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd()))
    }

    /// Opens (creating, mode 0600) the regular file `name` of ours in this
    /// directory, never through a symlink.
    ///
    /// # Errors
    /// It cannot be opened, or it is not a regular file of ours.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            let path = self.path.join(name);
            match e.raw_os_error() {
                Some(libc::ELOOP) => unsafe_dir(&path, "it is a symbolic link"),
                _ => io::Error::new(e.kind(), format!("opening {}: {e}", path.display())),
            }
        })?;
        let st = rustix::fs::fstat(&fd)?;
        let path = self.path.join(name);
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(unsafe_dir(&path, "it is not a regular file"));
        }
        if st.st_uid != me() {
            return Err(unsafe_dir(
                &path,
                &format!("it belongs to uid {}: remove it", st.st_uid),
            ));
        }
        Ok(File::from(fd))
    }

    /// Removes `name` from this directory (not a directory itself).
    ///
    /// # Errors
    /// As `unlinkat`.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, rustix::fs::AtFlags::empty()).map_err(Into::into)
    }

    /// Whether `name` exists in this directory.
    pub fn contains(&self, name: &str) -> bool {
        rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Sets the permission bits of `name`.
    ///
    /// # Errors
    /// As `fchmodat`.
    pub fn chmod(&self, name: &str, mode: u32) -> io::Result<()> {
        rustix::fs::chmodat(
            &self.fd,
            name,
            Mode::from_raw_mode(mode),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(Into::into)
    }

    /// The directory's descriptor.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn unsafe_dir(path: &Path, problem: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        Unsafe {
            path: path.to_owned(),
            problem: problem.to_owned(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ringbus-dirs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn creates_a_private_directory_and_refuses_unsafe_ones() {
        let p = scratch("create");
        let d = Dir::open(&p.join("a/b"), Some(0o700)).unwrap();
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        // Writable by others.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Dir::open(d.path(), Some(0o700)).unwrap_err();
        assert!(e.to_string().contains("lets others write it"), "{e}");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Dir::open(d.path(), None).unwrap();

        // A symlink to a directory of ours.
        let link = p.join("link");
        std::os::unix::fs::symlink(d.path(), &link).unwrap();
        let e = Dir::open(&link, Some(0o700)).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");

        // A file.
        std::fs::write(p.join("file"), b"").unwrap();
        let e = Dir::open(&p.join("file"), None).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        std::fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn files_are_never_opened_through_a_symlink() {
        let p = scratch("files");
        let d = Dir::open(&p, Some(0o700)).unwrap();
        let victim = p.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, p.join("x.lock")).unwrap();
        let e = d.open_file("x.lock").unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        std::fs::create_dir(p.join("sub")).unwrap();
        assert!(d.open_file("sub").is_err());
        let f = d.open_file("ok.lock").unwrap();
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(d.contains("ok.lock"));
        d.remove("ok.lock").unwrap();
        assert!(!d.contains("ok.lock"));
        std::fs::remove_dir_all(&p).unwrap();
    }
}
