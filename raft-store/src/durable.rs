//! The durability marker: what this replica has told openraft is on disk (its vote and the
//! id of its last log entry), written after every successful sled flush to a small file of
//! its own and fsynced apart from sled.
//!
//! Why: sled checks a checksum on every record when it recovers, and at the first record
//! that fails it stops and keeps what came before, silently (its "torn write" rule, right
//! after a crash, wrong after a byte flipped in the middle of a segment). A replica that
//! came back with an older vote could vote twice in one term; one that came back without
//! log entries it had acknowledged could let a leader be elected without an entry a quorum
//! committed. So on open the store compares what sled recovered with this marker, and a
//! store behind it is refused as damaged ([`crate::OpenError::Damaged`]).
//!
//! Layout: two slots of [`SLOT`] bytes, written in turn, each the magic, a sequence number
//! (u64), the record's length (u32), a CRC-32 of the sequence number, length and record,
//! and the record (JSON). The valid slot with the highest sequence number is the marker,
//! so a write torn by a crash leaves the previous one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openraft::{LogId, Vote};
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// The marker's file name in the store's directory (sled owns `db`, `conf`, `blobs/`,
/// `snap.*`; the snapshot is `raft-snapshot`).
pub(crate) const FILE_NAME: &str = "raft-durable";
const MAGIC: &[u8; 8] = b"AGDUR1\n\0";
const SLOT: u64 = 512;
const HEAD: usize = 8 + 8 + 4 + 4;

/// What has been reported persisted: the vote and the last log id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Durable {
    pub(crate) vote: Option<Vote<NodeId>>,
    pub(crate) last_log_id: Option<LogId<NodeId>>,
}

/// The open marker file.
pub(crate) struct Marker {
    file: File,
    path: PathBuf,
    seq: u64,
    written: Option<Durable>,
}

fn crc(seq: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_be_bytes());
    h.update(&(body.len() as u32).to_be_bytes());
    h.update(body);
    h.finalize()
}

fn read_slot(file: &File, slot: u64) -> Option<(u64, Durable)> {
    let mut buf = vec![0u8; SLOT as usize];
    let n = file.read_at(&mut buf, slot * SLOT).ok()?;
    if n < HEAD || &buf[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(buf[8..16].try_into().ok()?);
    let len = u32::from_be_bytes(buf[16..20].try_into().ok()?) as usize;
    let sum = u32::from_be_bytes(buf[20..24].try_into().ok()?);
    let body = buf.get(HEAD..HEAD + len)?;
    if HEAD + len > n || crc(seq, body) != sum {
        return None;
    }
    serde_json::from_slice(body).ok().map(|d| (seq, d))
}

impl Marker {
    /// Reads the marker in `dir`. `Ok(None)` when there is no file (a new store, or one
    /// written before the marker existed); an error names the damage when the file is
    /// there but neither slot holds a valid record.
    pub(crate) fn read(dir: &Path) -> Result<Option<Durable>, String> {
        let path = dir.join(FILE_NAME);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        match [read_slot(&file, 0), read_slot(&file, 1)]
            .into_iter()
            .flatten()
            .max_by_key(|(seq, _)| *seq)
        {
            Some((_, d)) => Ok(Some(d)),
            None => Err(format!(
                "{}: no valid record (cut short or overwritten)",
                path.display()
            )),
        }
    }

    /// Opens (creating) the marker in `dir` and writes `initial` to it durably.
    pub(crate) fn create(dir: &Path, initial: &Durable) -> io::Result<Marker> {
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let seq = [read_slot(&file, 0), read_slot(&file, 1)]
            .into_iter()
            .flatten()
            .map(|(s, _)| s)
            .max()
            .unwrap_or(0);
        let mut marker = Marker {
            file,
            path,
            seq,
            written: None,
        };
        marker.write(initial)?;
        // The file's own entry in the directory.
        File::open(dir)?.sync_all()?;
        Ok(marker)
    }

    /// Whether `d` says less of the log than the marker does (a truncation of conflicting
    /// entries): such a record must be written before the flush that removes the entries,
    /// so that a crash between the two never leaves the marker ahead of the store.
    pub(crate) fn lowers(&self, d: &Durable) -> bool {
        let index = |d: &Durable| d.last_log_id.map(|l| l.index);
        self.written.as_ref().is_some_and(|w| index(d) < index(w))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records `d` durably (nothing to do when it is what was last written).
    pub(crate) fn write(&mut self, d: &Durable) -> io::Result<()> {
        if self.written.as_ref() == Some(d) {
            return Ok(());
        }
        let body = serde_json::to_vec(d).map_err(io::Error::other)?;
        if HEAD + body.len() > SLOT as usize {
            return Err(io::Error::other("durability record too large"));
        }
        let seq = self.seq + 1;
        let mut buf = Vec::with_capacity(SLOT as usize);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&seq.to_be_bytes());
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(&crc(seq, &body).to_be_bytes());
        buf.extend_from_slice(&body);
        buf.resize(SLOT as usize, 0);
        self.file.write_all_at(&buf, (seq % 2) * SLOT)?;
        self.file.sync_data()?;
        self.seq = seq;
        self.written = Some(d.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn durable(term: u64, index: u64) -> Durable {
        Durable {
            vote: Some(Vote::new_committed(term, 1)),
            last_log_id: Some(LogId::new(CommittedLeaderId::new(term, 1), index)),
        }
    }

    #[test]
    fn the_last_record_written_is_read_back_and_a_torn_slot_leaves_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Marker::read(dir.path()).unwrap(), None);
        let mut m = Marker::create(dir.path(), &durable(1, 1)).unwrap();
        m.write(&durable(2, 5)).unwrap();
        m.write(&durable(3, 9)).unwrap();
        assert_eq!(Marker::read(dir.path()).unwrap(), Some(durable(3, 9)));
        // Tear the newest slot: the one before is the marker.
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = (m.seq % 2) as usize * SLOT as usize;
        bytes[newest + HEAD + 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Marker::read(dir.path()).unwrap(), Some(durable(2, 5)));
        // Reopened, it goes on from the highest valid sequence number.
        let mut m = Marker::create(dir.path(), &durable(4, 12)).unwrap();
        m.write(&durable(5, 13)).unwrap();
        assert_eq!(Marker::read(dir.path()).unwrap(), Some(durable(5, 13)));
    }

    #[test]
    fn a_marker_with_no_valid_slot_is_damage_not_absence() {
        let dir = tempfile::tempdir().unwrap();
        Marker::create(dir.path(), &durable(1, 1)).unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, b"").unwrap();
        let err = Marker::read(dir.path()).unwrap_err();
        assert!(
            err.contains("raft-durable") && err.contains("no valid record"),
            "{err}"
        );
    }
}
