//! The Raft log, the vote and the committed position on fjall: a database of their own in
//! `<data_dir>/cluster/raft` (the broker's store is another), so a log append is one fsync
//! of one journal. Every change is one atomic batch; an append is fsynced before openraft
//! hears it is durable; purge and truncate are one batch each (never half done).
//!
//! Values are `[crc32 u32 LE][bincode 2 (serde) payload]`; a bad CRC is a storage error,
//! which stops this node's Raft (a corrupt log must not vote or replicate).

// openraft's traits fix the error type (`StorageError`, large); our helpers return it too.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, LogState, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use serde::{de::DeserializeOwned, Serialize};

use super::TypeConfig;

type Result<T> = std::result::Result<T, StorageError<u64>>;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// Encodes a value with its CRC.
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let body = bincode::serde::encode_to_vec(v, config()).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes [`encode`]'s bytes; a bad CRC or trailing bytes are errors.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    if bytes.len() < 4 {
        return Err("value shorter than its CRC".into());
    }
    let (crc, body) = bytes.split_at(4);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != want {
        return Err("CRC mismatch".into());
    }
    let (v, used) = bincode::serde::decode_from_slice(body, config()).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} trailing bytes", body.len() - used));
    }
    Ok(v)
}

fn io(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::new(subject, verb, AnyError::error(e)).into()
}

fn read_err(e: impl std::fmt::Display) -> StorageError<u64> {
    io(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_err(e: impl std::fmt::Display) -> StorageError<u64> {
    io(ErrorSubject::Logs, ErrorVerb::Write, e)
}

/// The log store; clones share one database (a clone is openraft's log reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
    /// Appends written but not yet fsynced, waiting for the flusher.
    flush: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
}

/// The flusher: one fsync for every append written since the last one (group commit of
/// the log), then each append's callback, in order. Appends never wait for a disk while
/// holding up openraft's core.
fn flusher(db: Database, rx: std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let r = db.persist(PersistMode::SyncData);
        for cb in waiting {
            cb.log_io_completed(match &r {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            });
        }
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> std::result::Result<LogStore, String> {
        let db = Database::builder(dir)
            .cache_size(8 << 20)
            .open()
            .map_err(|e| format!("cannot open the Raft log in {}: {e}", dir.display()))?;
        let log = db
            .keyspace("log", KeyspaceCreateOptions::default)
            .map_err(|e| e.to_string())?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(|e| e.to_string())?;
        let (flush, rx) = std::sync::mpsc::channel();
        let d = db.clone();
        std::thread::Builder::new()
            .name("cortex-raft-log".into())
            .spawn(move || flusher(d, rx))
            .map_err(|e| format!("cannot start the log flusher: {e}"))?;
        Ok(LogStore {
            inner: Arc::new(Inner {
                db,
                log,
                meta,
                flush,
            }),
        })
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.inner.meta.get(key).map_err(read_err)? {
            None => Ok(None),
            Some(v) => decode(&v)
                .map(Some)
                .map_err(|e| read_err(format!("log meta {}: {e}", String::from_utf8_lossy(key)))),
        }
    }

    fn commit(&self, batch: fjall::OwnedWriteBatch, sync: bool) -> Result<()> {
        let batch = batch.durability(Some(if sync {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        }));
        batch.commit().map_err(write_err)
    }

    /// Removes log keys in `from..to` (index range) in `batch`.
    fn remove_range(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        from: u64,
        to: Bound<u64>,
    ) -> Result<()> {
        let range = (
            Bound::Included(from.to_be_bytes()),
            to.map(u64::to_be_bytes),
        );
        for item in self.inner.log.range(range) {
            let key = item.key().map_err(read_err)?;
            batch.remove(&self.inner.log, key);
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let start = range.start_bound().map(|i| i.to_be_bytes());
        let end = range.end_bound().map(|i| i.to_be_bytes());
        let mut out = Vec::new();
        for item in self.inner.log.range((start, end)) {
            let (k, v) = item.into_inner().map_err(read_err)?;
            let e: Entry<TypeConfig> = decode(&v).map_err(|e| {
                read_err(format!("log entry {}: {e}", u64::from_be_bytes(key8(&k))))
            })?;
            out.push(e);
        }
        Ok(out)
    }
}

fn key8(k: &[u8]) -> [u8; 8] {
    let mut a = [0; 8];
    let n = k.len().min(8);
    a[..n].copy_from_slice(&k[..n]);
    a
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let purged: Option<LogId<u64>> = self.get_meta(PURGED)?;
        let last = match self.inner.log.last_key_value() {
            Some(g) => {
                let (_, v) = g.into_inner().map_err(read_err)?;
                let e: Entry<TypeConfig> = decode(&v).map_err(read_err)?;
                Some(e.log_id)
            }
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<()> {
        let mut b = self.inner.db.batch();
        b.insert(&self.inner.meta, VOTE, encode(vote));
        self.commit(b, true)
            .map_err(|e| io(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<()> {
        // Not fsynced: a lost committed position is recomputed by the leader.
        let mut b = self.inner.db.batch();
        b.insert(&self.inner.meta, COMMITTED, encode(&committed));
        self.commit(b, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>> {
        Ok(self.get_meta::<Option<LogId<u64>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut b = self.inner.db.batch();
        for e in entries {
            b.insert(&self.inner.log, e.log_id.index.to_be_bytes(), encode(&e));
        }
        // Written (to the OS) now, as one batch; openraft hears "durable" from the flusher,
        // after the fsync that covers it.
        self.commit(b, false)?;
        self.inner
            .flush
            .send(callback)
            .map_err(|_| write_err("the log flusher stopped"))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<()> {
        let mut b = self.inner.db.batch();
        self.remove_range(&mut b, log_id.index, Bound::Unbounded)?;
        self.commit(b, true)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<()> {
        let mut b = self.inner.db.batch();
        let from = match self.get_meta::<LogId<u64>>(PURGED)? {
            Some(p) => p.index + 1,
            None => 0,
        };
        self.remove_range(&mut b, from, Bound::Included(log_id.index))?;
        b.insert(&self.inner.meta, PURGED, encode(&log_id));
        self.commit(b, true)
    }
}
