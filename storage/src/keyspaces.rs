//! The fjall keyspaces the store keeps its state in ([`crate::keys`] has their key
//! layouts), opened once with their settings, and the log progress a replicated store
//! records among them.

use fjall::{Database, KeyspaceCreateOptions, Readable};

use crate::codec::{self, Kind};
use crate::config::StoreConfig;
use crate::error::{corrupt, Result};
use crate::keys;
use crate::overlay::Ks;

/// The keyspaces, opened once.
pub(crate) struct Keyspaces {
    pub(crate) streams: Ks,
    pub(crate) groups: Ks,
    pub(crate) consumers: Ks,
    pub(crate) entries: Ks,
    pub(crate) lanes: Ks,
    pub(crate) pel: Ks,
    pub(crate) cpel: Ks,
    pub(crate) due: Ks,
    pub(crate) ready: Ks,
    pub(crate) idem: Ks,
    pub(crate) idem_exp: Ks,
    pub(crate) sys: Ks,
    pub(crate) nodes: Ks,
    pub(crate) sched: Ks,
    pub(crate) tasks: Ks,
}

/// Opens (creating when missing) the store's keyspaces with their settings.
pub(crate) fn open_keyspaces(db: &Database, cfg: &StoreConfig) -> Result<Keyspaces> {
    let big = cfg.memtable_bytes;
    let small = big.min(4 << 20);
    Ok(Keyspaces {
        streams: open_keyspace(db, 0, "streams", small)?,
        groups: open_keyspace(db, 1, "groups", small)?,
        consumers: open_keyspace(db, 2, "consumers", small)?,
        entries: open_keyspace(db, 3, "entries", big)?,
        lanes: open_keyspace(db, 4, "lanes", small)?,
        pel: open_keyspace(db, 5, "pel", big)?,
        cpel: open_keyspace(db, 6, "cpel", small)?,
        due: open_keyspace(db, 7, "due", small)?,
        ready: open_keyspace(db, 8, "ready", small)?,
        idem: open_keyspace(db, 9, "idem", small)?,
        idem_exp: open_keyspace(db, 10, "idem_exp", small)?,
        sys: open_keyspace(db, 11, "sys", small)?,
        nodes: open_keyspace(db, 12, "nodes", small)?,
        sched: open_keyspace(db, 13, "sched", small)?,
        tasks: open_keyspace(db, 14, "tasks", small)?,
    })
}

fn open_keyspace(db: &Database, id: usize, name: &str, memtable: u64) -> Result<Ks> {
    let ks = db.keyspace(name, || {
        KeyspaceCreateOptions::default().max_memtable_size(memtable)
    })?;
    Ok(Ks { id, ks })
}

impl Keyspaces {
    /// Every keyspace, in `Ks::id` order.
    pub(crate) fn all(&self) -> [&Ks; 15] {
        [
            &self.streams,
            &self.groups,
            &self.consumers,
            &self.entries,
            &self.lanes,
            &self.pel,
            &self.cpel,
            &self.due,
            &self.ready,
            &self.idem,
            &self.idem_exp,
            &self.sys,
            &self.nodes,
            &self.sched,
            &self.tasks,
        ]
    }
}

/// Reads the recorded log progress from a snapshot.
pub(crate) fn read_progress(snap: &fjall::Snapshot, ks: &Keyspaces) -> Result<Option<Vec<u8>>> {
    match Readable::get(snap, ks.sys.inner(), keys::PROGRESS_KEY)? {
        None => Ok(None),
        Some(v) => codec::decode::<Vec<u8>>(Kind::Progress, &v)
            .map(Some)
            .map_err(|r| corrupt("log progress", b"", None, r)),
    }
}
