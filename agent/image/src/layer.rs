//! What one entry of a layer's tar stream means, before anything is written: its path made
//! safe to join under the layer's directory, and OCI's whiteouts recognized.
//!
//! A layer is a tar stream of changes to the layers below it. Besides files, directories
//! and links it holds whiteouts (OCI image spec, "Representing Changes"): an empty file
//! `DIR/.wh.NAME` deletes `DIR/NAME` from the layers below, and `DIR/.wh..wh..opq` hides
//! everything below in `DIR` (an opaque directory). Unpacked for overlayfs, the first becomes
//! a character device 0/0 named `NAME`, the second the `trusted.overlay.opaque` attribute
//! on `DIR`; the agent does that, from the [`EntryKind`] this module gives.
//!
//! Paths in a tar stream are untrusted: `/etc/passwd`, `./etc/passwd` and `etc/passwd` all
//! mean the same file in the layer, and a path climbing out of the layer (`../x`,
//! `a/../../x`) is refused, never joined.

/// Prefix of a whiteout's file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// File name of an opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What an entry does to the layer's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// An ordinary entry (file, directory, link, device) at this relative path.
    Path(String),
    /// Deletes this relative path of the layers below.
    Whiteout(String),
    /// Hides the contents of this relative directory in the layers below ("" is the root).
    Opaque(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerPathError {
    #[error("layer entry {0:?} leaves the layer's root")]
    Escapes(String),
    #[error("layer entry {0:?} is not valid UTF-8 or holds a NUL")]
    Name(String),
    #[error("layer entry {0:?} whites out nothing")]
    EmptyWhiteout(String),
}

/// The entry's path relative to the layer's root, components joined by `/`, with `.`
/// dropped and `..` resolved; "" is the root itself.
pub fn normalize(path: &str) -> Result<String, LayerPathError> {
    if path.contains('\0') {
        return Err(LayerPathError::Name(path.to_string()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(LayerPathError::Escapes(path.to_string()));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// What the tar entry at `path` is.
pub fn classify(path: &str) -> Result<EntryKind, LayerPathError> {
    let rel = normalize(path)?;
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", rel.as_str()),
    };
    if name == OPAQUE_MARKER {
        return Ok(EntryKind::Opaque(dir.to_string()));
    }
    if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        if target.is_empty() || target == "." || target == ".." {
            return Err(LayerPathError::EmptyWhiteout(path.to_string()));
        }
        let full = if dir.is_empty() {
            target.to_string()
        } else {
            format!("{dir}/{target}")
        };
        return Ok(EntryKind::Whiteout(full));
    }
    Ok(EntryKind::Path(rel))
}

/// A hard link's target inside the layer: the same rules as an entry's path (a link may
/// name only something within the layers, never a host path).
pub fn link_target(target: &str) -> Result<String, LayerPathError> {
    let rel = normalize(target)?;
    if rel.is_empty() {
        return Err(LayerPathError::Escapes(target.to_string()));
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_are_relative_to_the_layer_and_never_leave_it() {
        for (given, rel) in [
            ("etc/passwd", "etc/passwd"),
            ("./etc/passwd", "etc/passwd"),
            ("/etc/passwd", "etc/passwd"),
            ("etc//x/./y/", "etc/x/y"),
            ("a/b/../c", "a/c"),
            ("./", ""),
        ] {
            assert_eq!(normalize(given), Ok(rel.to_string()), "{given}");
        }
        for bad in ["../x", "a/../../x", "/..", "./../etc"] {
            assert_eq!(
                normalize(bad),
                Err(LayerPathError::Escapes(bad.to_string()))
            );
        }
        assert!(matches!(normalize("a\0b"), Err(LayerPathError::Name(_))));
    }

    #[test]
    fn whiteouts_and_opaque_markers_are_recognized() {
        assert_eq!(
            classify("etc/.wh.motd"),
            Ok(EntryKind::Whiteout("etc/motd".into()))
        );
        assert_eq!(classify("./.wh.tmp"), Ok(EntryKind::Whiteout("tmp".into())));
        assert_eq!(
            classify("var/cache/.wh..wh..opq"),
            Ok(EntryKind::Opaque("var/cache".into()))
        );
        assert_eq!(
            classify(".wh..wh..opq"),
            Ok(EntryKind::Opaque(String::new()))
        );
        assert_eq!(
            classify("usr/bin/sh"),
            Ok(EntryKind::Path("usr/bin/sh".into()))
        );
        // Not a whiteout: the prefix must begin the name.
        assert_eq!(classify("a/x.wh.y"), Ok(EntryKind::Path("a/x.wh.y".into())));
        assert!(matches!(
            classify("a/.wh."),
            Err(LayerPathError::EmptyWhiteout(_))
        ));
        assert!(matches!(
            classify("a/.wh.."),
            Err(LayerPathError::EmptyWhiteout(_))
        ));
        assert!(matches!(
            classify("../.wh.x"),
            Err(LayerPathError::Escapes(_))
        ));
    }

    #[test]
    fn hard_links_stay_inside_the_layers() {
        assert_eq!(link_target("/bin/busybox"), Ok("bin/busybox".into()));
        assert!(link_target("../../etc/shadow").is_err());
        assert!(link_target("/").is_err());
    }

    proptest! {
        /// Whatever a tar stream says, the result never climbs out and never starts with '/'.
        #[test]
        fn a_normalized_path_stays_under_the_root(path in "[a-z./]{0,30}") {
            if let Ok(rel) = normalize(&path) {
                prop_assert!(!rel.starts_with('/'));
                prop_assert!(rel.split('/').all(|c| c != ".." && c != "." ));
                prop_assert!(!rel.contains("//"));
            }
        }
    }
}
