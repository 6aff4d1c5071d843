//! The copy backend of a container's root filesystem (Mesos' `copy` provisioner backend),
//! for hosts whose kernel cannot mount overlayfs (or when the operator asks for it): the
//! image's layers, as the store keeps them for overlayfs (a whiteout is a 0/0 character
//! device, an opaque directory has `trusted.overlay.opaque`), applied one over another,
//! base first, into the container's own directory with `cp -a` (owners, modes, times,
//! links and special files kept), whiteouts deleting what the layers below put there.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Applies `layers` (base first) into the empty directory `rootfs`.
pub fn build_rootfs(layers: &[PathBuf], rootfs: &Path) -> io::Result<()> {
    for layer in layers {
        let (whiteouts, opaque) = markers(layer)?;
        for rel in &opaque {
            clear(&rootfs.join(rel))?;
        }
        for rel in &whiteouts {
            remove(&rootfs.join(rel))?;
        }
        let out = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", layer.display()))
            .arg(rootfs)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "cp -a {}: {}",
                layer.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // The whiteouts came along as devices: what they mark is gone.
        for rel in &whiteouts {
            remove(&rootfs.join(rel))?;
        }
    }
    Ok(())
}

/// The whiteouts and opaque directories of a layer, relative to it.
fn markers(layer: &Path) -> io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut whiteouts, mut opaque) = (Vec::new(), Vec::new());
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(layer.join(&rel))? {
            let e = e?;
            let meta = fs::symlink_metadata(e.path())?;
            let child = rel.join(e.file_name());
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                whiteouts.push(child);
            } else if meta.is_dir() {
                if is_opaque(&e.path()) {
                    opaque.push(child.clone());
                }
                stack.push(child);
            }
        }
    }
    Ok((whiteouts, opaque))
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: C strings and a buffer of the length given.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// Removes whatever is at `path` (a tree included); nothing there is fine.
fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Empties the directory at `path` (if it is one).
fn clear(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            for e in fs::read_dir(path)? {
                remove(&e?.path())?;
            }
            Ok(())
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::unpack::{unpack, Whiteouts};

    fn tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_cksum();
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_copied_in_order_with_whiteouts_and_opaque_directories_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper, rootfs) = (
            dir.path().join("lower"),
            dir.path().join("upper"),
            dir.path().join("rootfs"),
        );
        for d in [&lower, &upper, &rootfs] {
            fs::create_dir(d).unwrap();
        }
        let base = tar(&[
            ("a/", None),
            ("a/gone", Some(b"x")),
            ("a/kept", Some(b"k")),
            ("b/", None),
            ("b/old", Some(b"o")),
            ("c", Some(b"base")),
        ]);
        let top = tar(&[
            ("a/.wh.gone", Some(b"")),
            ("b/", None),
            ("b/.wh..wh..opq", Some(b"")),
            ("b/new", Some(b"n")),
            ("c", Some(b"top")),
        ]);
        unpack(&base[..], &lower, Whiteouts::Overlay).unwrap();
        unpack(&top[..], &upper, Whiteouts::Overlay).unwrap();
        build_rootfs(&[lower, upper], &rootfs).unwrap();
        assert!(!rootfs.join("a/gone").exists());
        assert_eq!(fs::read(rootfs.join("a/kept")).unwrap(), b"k");
        assert!(!rootfs.join("b/old").exists());
        assert_eq!(fs::read(rootfs.join("b/new")).unwrap(), b"n");
        assert_eq!(fs::read(rootfs.join("c")).unwrap(), b"top");
    }
}
