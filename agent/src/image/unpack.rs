//! Unpacking one image layer (a tar stream, gzip-compressed or not) into a directory.
//!
//! Two ways, for the two ways a root filesystem is assembled:
//! - [`Whiteouts::Overlay`]: the layer is unpacked into a directory of its own, to be one
//!   `lowerdir` of an overlayfs mount; OCI's whiteouts become overlayfs' (a `.wh.NAME` file a
//!   character device 0/0 named `NAME`, a `.wh..wh..opq` marker the `trusted.overlay.opaque`
//!   attribute on its directory). Needs root (mknod, trusted attributes).
//! - [`Whiteouts::Apply`]: the layer is applied onto a directory that already holds the
//!   layers below it, for hosts without overlayfs: a whiteout deletes what it names, an
//!   opaque marker empties its directory.
//!
//! Every entry's path goes through [`agora_image::layer::classify`] (no `..` out of the
//! layer); the `tar` crate then refuses to write through a symlink that leads out of the
//! directory. Ownership, modes, times and extended attributes are kept as the layer says.

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use agora_image::layer::{classify, EntryKind, LayerPathError};

/// What to do with whiteouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    Overlay,
    Apply,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer is not a tar stream (or a gzip-compressed one): {0}")]
    Format(io::Error),
    #[error(transparent)]
    Path(#[from] LayerPathError),
    #[error("cannot unpack layer entry {path:?}: {source}")]
    Entry { path: String, source: io::Error },
}

/// Counts of what a layer held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: u64,
    pub whiteouts: u64,
    pub bytes: u64,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Unpacks the layer read from `layer` into `dest` (which must exist).
pub fn unpack(
    layer: impl Read,
    dest: &Path,
    whiteouts: Whiteouts,
) -> Result<Unpacked, UnpackError> {
    let mut buffered = BufReader::with_capacity(256 * 1024, layer);
    let gzip = buffered
        .fill_buf()
        .map_err(UnpackError::Format)?
        .starts_with(&GZIP_MAGIC);
    if gzip {
        unpack_tar(flate2::read::GzDecoder::new(buffered), dest, whiteouts)
    } else {
        unpack_tar(buffered, dest, whiteouts)
    }
}

fn unpack_tar(
    stream: impl Read,
    dest: &Path,
    whiteouts: Whiteouts,
) -> Result<Unpacked, UnpackError> {
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut done = Unpacked::default();
    for entry in archive.entries().map_err(UnpackError::Format)? {
        let mut entry = entry.map_err(UnpackError::Format)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let failed = |source: io::Error| UnpackError::Entry {
            path: raw.clone(),
            source,
        };
        done.entries += 1;
        match classify(&raw)? {
            EntryKind::Path(rel) => {
                if let tar::EntryType::Link = entry.header().entry_type() {
                    // A hard link names another entry of the layers: never a host path.
                    if let Some(target) = entry.link_name_bytes() {
                        agora_image::layer::link_target(&String::from_utf8_lossy(&target))?;
                    }
                }
                if rel.is_empty() {
                    continue;
                }
                if whiteouts == Whiteouts::Apply {
                    // A directory replacing a file (or the reverse) between layers.
                    let path = dest.join(&rel);
                    let is_dir = entry.header().entry_type().is_dir();
                    if let Ok(meta) = fs::symlink_metadata(&path) {
                        if meta.is_dir() != is_dir || (!is_dir && meta.file_type().is_symlink()) {
                            remove_path(&path).map_err(failed)?;
                        }
                    }
                }
                done.bytes += entry.header().size().unwrap_or(0);
                let unpacked = entry.unpack_in(dest).map_err(failed)?;
                if !unpacked {
                    return Err(LayerPathError::Escapes(raw).into());
                }
            }
            EntryKind::Whiteout(rel) => {
                done.whiteouts += 1;
                let path = dest.join(&rel);
                match whiteouts {
                    Whiteouts::Overlay => {
                        ensure_parent(dest, &rel).map_err(failed)?;
                        let _ = remove_path(&path);
                        mknod_whiteout(&path).map_err(failed)?;
                    }
                    Whiteouts::Apply => match remove_path(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(failed(e)),
                    },
                }
            }
            EntryKind::Opaque(rel) => {
                done.whiteouts += 1;
                let dir = dest.join(&rel);
                match whiteouts {
                    Whiteouts::Overlay => {
                        fs::create_dir_all(&dir).map_err(failed)?;
                        set_opaque(&dir).map_err(failed)?;
                    }
                    Whiteouts::Apply => {
                        if let Ok(list) = fs::read_dir(&dir) {
                            for child in list {
                                let child = child.map_err(failed)?;
                                remove_path(&child.path()).map_err(failed)?;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(done)
}

/// Creates the directories above `rel` inside `dest` (a whiteout's parent may not have been
/// in the stream yet).
fn ensure_parent(dest: &Path, rel: &str) -> io::Result<()> {
    match rel.rsplit_once('/') {
        Some((parent, _)) => fs::create_dir_all(dest.join(parent)),
        None => Ok(()),
    }
}

fn remove_path(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("path holds a NUL"))
}

/// overlayfs' whiteout: a character device 0/0.
fn mknod_whiteout(path: &Path) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; mknod reads it and creates a node.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// overlayfs' opaque directory: hides the lower layers' contents of `dir`.
fn set_opaque(dir: &Path) -> io::Result<()> {
    let c = c_path(dir)?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: valid NUL-terminated path and name, a one-byte value buffer of that length.
    let rc = unsafe { libc::setxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    /// A tar header owned by uid 1234, gid 4321.
    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_uid(1234);
        h.set_gid(4321);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h
    }

    /// A layer built entry by entry: (path, contents or None for a directory).
    fn layer(entries: &[(&str, Option<&str>)], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, body) in entries {
            match body {
                Some(text) => {
                    let mut h = header(tar::EntryType::Regular, text.len() as u64, 0o640);
                    b.append_data(&mut h, path, text.as_bytes()).unwrap();
                }
                None => {
                    let mut h = header(tar::EntryType::Directory, 0, 0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        let tar = b.into_inner().unwrap();
        if !gzip {
            return tar;
        }
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &tar).unwrap();
        z.finish().unwrap()
    }

    /// A lower layer with `a/keep`, `a/gone` and `b/old`, and an upper one that whites out
    /// `a/gone`, makes `b` opaque and adds `b/new`.
    fn two_layers() -> (Vec<u8>, Vec<u8>) {
        let lower = layer(
            &[
                ("a/", None),
                ("a/keep", Some("1")),
                ("a/gone", Some("2")),
                ("b/", None),
                ("b/old", Some("3")),
            ],
            false,
        );
        let upper = layer(
            &[
                ("a/.wh.gone", Some("")),
                ("b/.wh..wh..opq", Some("")),
                ("b/new", Some("4")),
            ],
            false,
        );
        (lower, upper)
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn files_modes_and_gzip_are_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = layer(&[("etc/", None), ("etc/motd", Some("hello\n"))], true);
        let done = unpack(&bytes[..], dir.path(), Whiteouts::Apply).unwrap();
        assert_eq!(done.entries, 2);
        assert_eq!(
            fs::read_to_string(dir.path().join("etc/motd")).unwrap(),
            "hello\n"
        );
        let meta = fs::metadata(dir.path().join("etc/motd")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        if is_root() {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                (meta.uid(), meta.gid()),
                (1234, 4321),
                "ownership as the layer says"
            );
        }
    }

    #[test]
    fn applied_whiteouts_delete_and_opaque_markers_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = two_layers();
        unpack(&lower[..], dir.path(), Whiteouts::Apply).unwrap();
        let done = unpack(&upper[..], dir.path(), Whiteouts::Apply).unwrap();
        assert_eq!(done.whiteouts, 2);
        assert!(dir.path().join("a/keep").exists());
        assert!(!dir.path().join("a/gone").exists());
        assert!(!dir.path().join("b/old").exists());
        assert!(dir.path().join("b/new").exists());
        assert!(!dir.path().join("a/.wh.gone").exists());
    }

    #[test]
    fn overlay_whiteouts_become_devices_and_opaque_attributes() {
        if !is_root() {
            eprintln!("skipped: needs root (mknod, trusted attributes)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let upper = layer(
            &[("x/.wh.gone", Some("")), ("y/.wh..wh..opq", Some(""))],
            false,
        );
        unpack(&upper[..], dir.path(), Whiteouts::Overlay).unwrap();
        let meta = fs::symlink_metadata(dir.path().join("x/gone")).unwrap();
        assert!(meta.file_type().is_char_device());
        let c = c_path(&dir.path().join("y")).unwrap();
        let mut buf = [0u8; 4];
        // SAFETY: valid path and name, buffer of the given length.
        let n = unsafe {
            libc::getxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(n, 1);
        assert_eq!(buf[0], b'y');
    }

    #[test]
    fn overlayfs_reads_the_unpacked_whiteouts_as_deletions() {
        if !is_root() {
            eprintln!("skipped: needs root (mknod, mount)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (l1, l2, mnt) = (
            dir.path().join("l1"),
            dir.path().join("l2"),
            dir.path().join("mnt"),
        );
        for d in [&l1, &l2, &mnt] {
            fs::create_dir(d).unwrap();
        }
        let (lower, upper) = two_layers();
        unpack(&lower[..], &l1, Whiteouts::Overlay).unwrap();
        unpack(&upper[..], &l2, Whiteouts::Overlay).unwrap();
        let opts = CString::new(format!("lowerdir={}:{}", l2.display(), l1.display())).unwrap();
        let target = c_path(&mnt).unwrap();
        // SAFETY: valid NUL-terminated strings; a read-only overlay of two directories we own.
        let rc = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                libc::MS_RDONLY,
                opts.as_ptr().cast(),
            )
        };
        if rc != 0 {
            eprintln!(
                "skipped: overlayfs cannot be mounted here: {}",
                io::Error::last_os_error()
            );
            return;
        }
        let seen = (
            mnt.join("a/keep").exists(),
            mnt.join("a/gone").exists(),
            mnt.join("b/old").exists(),
            mnt.join("b/new").exists(),
        );
        // SAFETY: the mount made above.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        assert_eq!(seen, (true, false, false, true));
    }

    #[test]
    fn entries_that_climb_out_are_refused_and_nothing_is_written_outside() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("layer");
        fs::create_dir(&dest).unwrap();
        // The tar crate's builder refuses `..` itself, so write the name into the header.
        let mut h = header(tar::EntryType::Regular, 1, 0o644);
        {
            let name = &mut h.as_gnu_mut().unwrap().name;
            name[..8].copy_from_slice(b"../evil\0");
        }
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let err = unpack(&bytes[..], &dest, Whiteouts::Apply).unwrap_err();
        assert!(
            matches!(err, UnpackError::Path(LayerPathError::Escapes(_))),
            "{err}"
        );
        assert!(!outer.path().join("evil").exists());
    }

    #[test]
    fn a_symlink_out_of_the_layer_is_not_written_through() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("layer");
        fs::create_dir(&dest).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut h, "escape", outer.path()).unwrap();
        let mut h = header(tar::EntryType::Regular, 1, 0o644);
        b.append_data(&mut h, "escape/pwned", &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(unpack(&bytes[..], &dest, Whiteouts::Apply).is_err());
        assert!(!outer.path().join("pwned").exists());
    }

    #[test]
    fn garbage_is_not_a_layer() {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&[0x1f, 0x8b, 1, 2, 3][..], dir.path(), Whiteouts::Apply).unwrap_err();
        assert!(
            matches!(err, UnpackError::Format(_) | UnpackError::Entry { .. }),
            "{err}"
        );
    }
}
