//! The replicated state machine: the broker's own [`cortex_storage::Store`]. A log entry is
//! one writer batch (`encode_batch`: the leader's `now_ms` and the ops); applying it is one
//! `Store::apply_logged`, which writes the log position (and the membership and clock) in
//! the same atomic commit, so the store and its recorded progress always agree.
//!
//! The store is written without fsync (`Durability::Buffered`): the log is the durable
//! copy, and replay from the recorded progress covers a crash. Before a snapshot lets the
//! log be purged, the store is fsynced.
//!
//! Snapshots are consistent copies of the store (`Store::backup_to`: one committed fjall
//! snapshot into a new store), kept in `<cluster>/snapshots/<id>/` with `<id>.meta`; a
//! node that fell behind the purged log receives the copy's files and swaps its store for
//! it (`Core::replace_store`).

use std::path::{Path, PathBuf};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::log::{decode, encode};
use super::TypeConfig;
use crate::core::Core;

type Result<T> = std::result::Result<T, StorageError<u64>>;

/// Entries with at most this many ops in all are applied on the state machine's task;
/// more go to the blocking pool, so the runtime thread is never held long.
const INLINE_APPLY_OPS: usize = 256;

/// A snapshot: a directory holding a complete store.
#[derive(Debug)]
pub struct SnapshotDir {
    /// Its path.
    pub path: PathBuf,
}

/// What the store records with each applied entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Progress {
    /// The last applied log entry.
    pub applied: Option<LogId<u64>>,
    /// The last applied membership.
    pub membership: StoredMembership<u64, BasicNode>,
    /// The state machine's clock: the largest `now_ms` applied. Entries are applied at
    /// `max(leader's stamp, this)`, so time never goes back, across leader changes too.
    pub now_ms: u64,
}

impl Progress {
    /// Reads the progress the store recorded.
    pub fn of(store: &cortex_storage::Store) -> std::result::Result<Progress, String> {
        match store.progress().map_err(|e| e.to_string())? {
            None => Ok(Progress::default()),
            Some(b) => decode(&b).map_err(|e| format!("the store's log progress: {e}")),
        }
    }
}

fn sm_err(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::error(e)).into()
}

fn snap_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::new(
        ErrorSubject::Snapshot(None),
        ErrorVerb::Write,
        AnyError::error(e),
    )
    .into()
}

/// Where a node keeps its cluster files.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// `<data_dir>/cluster`.
    pub root: PathBuf,
}

impl Dirs {
    /// The Raft log's database.
    pub fn log(&self) -> PathBuf {
        self.root.join("raft")
    }

    /// Built and received snapshots.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The store directory in use (named by `CURRENT`), and its generation.
    pub fn current_state(&self) -> (PathBuf, u64) {
        let generation = std::fs::read_to_string(self.root.join("CURRENT"))
            .ok()
            .and_then(|s| s.trim().strip_prefix("state-")?.parse().ok())
            .unwrap_or(0);
        (self.state(generation), generation)
    }

    fn state(&self, generation: u64) -> PathBuf {
        self.root.join(format!("state-{generation}"))
    }

    /// A fresh directory name for an incoming snapshot.
    pub fn receiving(&self) -> PathBuf {
        self.root.join(format!("recv-{:016x}", super::random_u64()))
    }

    /// Removes what a crash can leave behind: store generations other than the current
    /// one, half-received and half-built snapshots.
    pub fn clean(&self) -> std::result::Result<(), String> {
        let (current, _) = self.current_state();
        for dir in [&self.root, &self.snapshots()] {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let stale = (name.starts_with("state-") && e.path() != current)
                    || name.starts_with("recv-")
                    || name.starts_with("building-");
                if stale {
                    tracing::info!("removing stale {}", e.path().display());
                    std::fs::remove_dir_all(e.path())
                        .map_err(|err| format!("cannot remove {}: {err}", e.path().display()))?;
                }
            }
        }
        Ok(())
    }

    /// The newest complete snapshot (its `.meta` is written last).
    pub fn latest_snapshot(&self) -> Option<(SnapshotMeta<u64, BasicNode>, PathBuf)> {
        let mut best: Option<(SnapshotMeta<u64, BasicNode>, PathBuf)> = None;
        for e in std::fs::read_dir(self.snapshots()).ok()?.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "meta") {
                let Ok(bytes) = std::fs::read(&p) else {
                    continue;
                };
                let Ok(meta) = decode::<SnapshotMeta<u64, BasicNode>>(&bytes) else {
                    tracing::warn!("ignoring unreadable snapshot meta {}", p.display());
                    continue;
                };
                let dir = p.with_extension("");
                if dir.is_dir()
                    && best
                        .as_ref()
                        .is_none_or(|(b, _)| b.last_log_id < meta.last_log_id)
                {
                    best = Some((meta, dir));
                }
            }
        }
        best
    }

    /// Records `dir` (already in `snapshots/`) as a complete snapshot, then drops the
    /// older ones but the previous (which a follower may still be receiving).
    fn publish_snapshot(
        &self,
        meta: &SnapshotMeta<u64, BasicNode>,
        dir: &Path,
    ) -> std::result::Result<(), String> {
        let meta_path = dir.with_extension("meta");
        write_synced(&meta_path, &encode(meta))?;
        let mut all: Vec<(SnapshotMeta<u64, BasicNode>, PathBuf)> = Vec::new();
        for e in std::fs::read_dir(self.snapshots())
            .map_err(|e| e.to_string())?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "meta") {
                if let Ok(m) = std::fs::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| decode(&b))
                {
                    all.push((m, p.with_extension("")));
                }
            }
        }
        all.sort_by_key(|m| std::cmp::Reverse(m.0.last_log_id));
        for (_, old) in all.into_iter().skip(2) {
            let _ = std::fs::remove_file(old.with_extension("meta"));
            let _ = std::fs::remove_dir_all(&old);
        }
        Ok(())
    }
}

/// Writes a file and fsyncs it and its directory.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> std::result::Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    Ok(())
}

/// Copies a directory tree (a snapshot kept for serving while its copy becomes the store).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// openraft's state machine over the core's store.
pub struct StateMachine {
    core: Core,
    dirs: Dirs,
    progress: Progress,
}

impl StateMachine {
    /// The state machine of `core`, whose store has recorded `progress`.
    pub fn new(core: Core, dirs: Dirs, progress: Progress) -> StateMachine {
        StateMachine {
            core,
            dirs,
            progress,
        }
    }
}

/// Builds snapshots off the state machine's task.
pub struct Builder {
    core: Core,
    dirs: Dirs,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let store = self.core.store();
        let dirs = self.dirs.clone();
        let (meta, path) = tokio::task::spawn_blocking(move || {
            // The log may be purged up to this snapshot: the store must be durable first.
            store.persist().map_err(|e| e.to_string())?;
            std::fs::create_dir_all(dirs.snapshots()).map_err(|e| e.to_string())?;
            let tmp = dirs
                .snapshots()
                .join(format!("building-{:016x}", super::random_u64()));
            let report = store.backup_to(&tmp).map_err(|e| e.to_string())?;
            let progress: Progress = match report.progress {
                Some(b) => decode(&b)?,
                None => Progress::default(),
            };
            let index = progress.applied.map_or(0, |l| l.index);
            let meta = SnapshotMeta {
                last_log_id: progress.applied,
                last_membership: progress.membership,
                snapshot_id: format!("{index:020}-{:016x}", super::random_u64()),
            };
            let dir = dirs.snapshots().join(&meta.snapshot_id);
            std::fs::rename(&tmp, &dir).map_err(|e| e.to_string())?;
            dirs.publish_snapshot(&meta, &dir)?;
            tracing::info!(
                "snapshot {} built: {} keys, {} bytes",
                meta.snapshot_id,
                report.keys,
                report.bytes
            );
            Ok::<_, String>((meta, dir))
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotDir { path }),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        Ok((self.progress.applied, self.progress.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut work = Vec::new();
        for e in entries {
            self.progress.applied = Some(e.log_id);
            let (ops, stamp, origins) = match e.payload {
                EntryPayload::Blank => (Vec::new(), 0, Vec::new()),
                EntryPayload::Normal(b) => {
                    let (stamp, ops) = cortex_storage::decode_batch(&b.ops).map_err(|r| {
                        sm_err(ErrorVerb::Read, format!("log entry {}: {r}", e.log_id))
                    })?;
                    (ops, stamp, b.origins)
                }
                EntryPayload::Membership(m) => {
                    self.progress.membership = StoredMembership::new(Some(e.log_id), m);
                    (Vec::new(), 0, Vec::new())
                }
            };
            self.progress.now_ms = self.progress.now_ms.max(stamp);
            work.push(super::Applying {
                ops,
                now_ms: self.progress.now_ms,
                progress: encode(&self.progress),
                origins,
            });
        }
        let n = work.len();
        let core = self.core.clone();
        let ops: usize = work.iter().map(|w| w.ops.len()).sum();
        if ops <= INLINE_APPLY_OPS {
            // Small: applied right here; a hop to the blocking pool costs more than this.
            core.apply_logged(work)
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        } else {
            tokio::task::spawn_blocking(move || core.apply_logged(work))
                .await
                .map_err(|e| sm_err(ErrorVerb::Write, e))?
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        Ok(vec![(); n])
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            core: self.core.clone(),
            dirs: self.dirs.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotDir>> {
        Ok(Box::new(SnapshotDir {
            path: self.dirs.receiving(),
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<SnapshotDir>,
    ) -> Result<()> {
        let core = self.core.clone();
        let dirs = self.dirs.clone();
        let meta = meta.clone();
        let progress = tokio::task::spawn_blocking(move || {
            let received = snapshot.path;
            // Keep a copy to serve to others; the received files become the store.
            let keep = dirs.snapshots().join(&meta.snapshot_id);
            if !keep.exists() {
                std::fs::create_dir_all(dirs.snapshots()).map_err(|e| e.to_string())?;
                let tmp = dirs
                    .snapshots()
                    .join(format!("building-{:016x}", super::random_u64()));
                copy_dir(&received, &tmp).map_err(|e| format!("copying the snapshot: {e}"))?;
                std::fs::rename(&tmp, &keep).map_err(|e| e.to_string())?;
                dirs.publish_snapshot(&meta, &keep)?;
            }
            let (_, generation) = dirs.current_state();
            let next = dirs.state(generation + 1);
            std::fs::rename(&received, &next).map_err(|e| e.to_string())?;
            let store = cortex_storage::Store::open(&next, core.config.store_for_cluster())
                .map_err(|e| format!("the received snapshot does not open: {e}"))?;
            let progress = Progress::of(&store)?;
            if progress.applied != meta.last_log_id {
                return Err(format!(
                    "the received snapshot records {:?}, not {:?}",
                    progress.applied, meta.last_log_id
                ));
            }
            store.persist().map_err(|e| e.to_string())?;
            write_synced(
                &dirs.root.join("CURRENT"),
                format!("state-{}\n", generation + 1).as_bytes(),
            )?;
            core.replace_store(store);
            tracing::info!(
                "installed snapshot {} (up to {:?})",
                meta.snapshot_id,
                meta.last_log_id
            );
            Ok::<_, String>(progress)
        })
        .await
        .map_err(snap_err)?
        .map_err(snap_err)?;
        self.progress = progress;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(self.dirs.latest_snapshot().map(|(meta, path)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotDir { path }),
        }))
    }
}
