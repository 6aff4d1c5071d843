//! The current snapshot as one file beside sled's: written whole to a temporary file,
//! fsynced, and renamed over the last one (then the directory fsynced), so a crash leaves
//! either the old snapshot or the new one, never a part.
//!
//! Snapshots are rewritten whole every few thousand entries. Kept in sled, each rewrite of
//! a value of half a megabyte or more went through sled's page cache and write buffers, and
//! the leader's heap grew with them over a run of a million tasks; a file costs one write
//! and one fsync and keeps nothing in memory. The log stays in sled.
//!
//! Layout: the magic line, the metadata's length (u32, big-endian), the data's length
//! (u64, big-endian) and a CRC-32 of the metadata and data (u32, big-endian), the metadata
//! (JSON), the data (the machine's serialized state). A byte changed anywhere is refused on
//! reading: JSON with a digit flipped still parses, into a state no other replica has.
//! Files of the first layout (`AGSNAP1`, no checksum) are still read.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"AGSNAP2\n";
const MAGIC_V1: &[u8; 8] = b"AGSNAP1\n";
/// Not `snap.*`: sled owns those names in the same directory.
const FILE_NAME: &str = "raft-snapshot";

/// Where the current snapshot lives.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotFile {
    dir: PathBuf,
}

impl SnapshotFile {
    pub(crate) fn new(dir: &Path) -> Self {
        SnapshotFile {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    pub(crate) fn exists(&self) -> bool {
        self.path().exists()
    }

    /// Replaces the current snapshot with `meta` and `data`, durably.
    pub(crate) fn write(&self, meta: &[u8], data: &[u8]) -> io::Result<()> {
        let meta_len = u32::try_from(meta.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "snapshot metadata too large")
        })?;
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            let mut head = Vec::with_capacity(MAGIC.len() + 16);
            head.extend_from_slice(MAGIC);
            head.extend_from_slice(&meta_len.to_be_bytes());
            head.extend_from_slice(&(data.len() as u64).to_be_bytes());
            head.extend_from_slice(&checksum(meta, data).to_be_bytes());
            f.write_all(&head)?;
            f.write_all(meta)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.path())?;
        File::open(&self.dir)?.sync_all()
    }

    /// The current snapshot's metadata and data, if there is one. A file cut short or not
    /// of this layout is an error, never read as a smaller state.
    pub(crate) fn read(&self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut f = match File::open(self.path()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |what: &str| {
            io::Error::new(io::ErrorKind::InvalidData, format!("snapshot file: {what}"))
        };
        let mut head = [0u8; 24];
        f.read_exact(&mut head[..20])
            .map_err(|_| bad("header cut short"))?;
        let (head_len, sum) = match &head[..8] {
            m if m == MAGIC => {
                f.read_exact(&mut head[20..])
                    .map_err(|_| bad("header cut short"))?;
                (
                    24,
                    Some(u32::from_be_bytes(
                        head[20..24].try_into().expect("4 bytes"),
                    )),
                )
            }
            m if m == MAGIC_V1 => (20, None),
            _ => return Err(bad("not a snapshot")),
        };
        let meta_len = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes")) as u64;
        let data_len = u64::from_be_bytes(head[12..20].try_into().expect("8 bytes"));
        let file_len = f.metadata()?.len();
        if file_len != head_len + meta_len + data_len {
            return Err(bad("length does not match its header"));
        }
        let mut meta = vec![0u8; meta_len as usize];
        f.read_exact(&mut meta)?;
        let mut data = Vec::with_capacity(data_len as usize);
        f.read_to_end(&mut data)?;
        if sum.is_some_and(|sum| sum != checksum(&meta, &data)) {
            return Err(bad(
                "checksum mismatch (its bytes changed after it was written)",
            ));
        }
        Ok(Some((meta, data)))
    }
}

fn checksum(meta: &[u8], data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(meta);
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_as_written_and_replaces_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        assert!(file.read().unwrap().is_none());
        file.write(b"{\"m\":1}", b"first").unwrap();
        file.write(b"{\"m\":2}", b"second, longer").unwrap();
        let (meta, data) = file.read().unwrap().unwrap();
        assert_eq!(
            (meta.as_slice(), data.as_slice()),
            (&b"{\"m\":2}"[..], &b"second, longer"[..])
        );
        assert!(!dir.path().join("raft-snapshot.tmp").exists());
    }

    #[test]
    fn a_file_cut_short_is_an_error_not_a_smaller_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        file.write(b"{}", b"0123456789").unwrap();
        let path = dir.path().join("raft-snapshot");
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = file.read().unwrap_err();
        assert!(err.to_string().contains("length"), "{err}");
        fs::write(&path, b"garbage").unwrap();
        assert!(file.read().is_err());
    }

    #[test]
    fn a_byte_changed_is_an_error_and_the_first_layout_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        file.write(b"{}", b"{\"tasks\":12345}").unwrap();
        let path = dir.path().join("raft-snapshot");
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] = b'9';
        fs::write(&path, &bytes).unwrap();
        let err = file.read().unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let mut v1 = MAGIC_V1.to_vec();
        v1.extend_from_slice(&2u32.to_be_bytes());
        v1.extend_from_slice(&3u64.to_be_bytes());
        v1.extend_from_slice(b"{}old");
        fs::write(&path, &v1).unwrap();
        let (meta, data) = file.read().unwrap().unwrap();
        assert_eq!(
            (meta.as_slice(), data.as_slice()),
            (&b"{}"[..], &b"old"[..])
        );
    }
}
