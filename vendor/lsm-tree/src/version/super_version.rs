// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

use crate::{
    memtable::Memtable,
    tree::sealed::SealedMemtables,
    version::{persist_version, Version},
    SeqNo, SequenceNumberCounter,
};
use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

/// A super version is a point-in-time snapshot of memtables and a [`Version`] (list of disk files)
#[derive(Clone)]
pub struct SuperVersion {
    /// Active memtable that is being written to
    #[doc(hidden)]
    pub active_memtable: Arc<Memtable>,

    /// Frozen memtables that are being flushed
    pub(crate) sealed_memtables: Arc<SealedMemtables>,

    /// Current tree version
    pub(crate) version: Version,

    pub(crate) seqno: SeqNo,
}

pub struct SuperVersions(VecDeque<SuperVersion>);

impl SuperVersions {
    pub fn new(version: Version) -> Self {
        Self(
            vec![SuperVersion {
                active_memtable: Arc::new(Memtable::new(0)),
                sealed_memtables: Arc::default(),
                version,
                seqno: 0,
            }]
            .into(),
        )
    }

    pub fn memtable_size_sum(&self) -> u64 {
        let mut set = crate::HashMap::default();

        for super_version in &self.0 {
            set.entry(super_version.active_memtable.id)
                .and_modify(|bytes| *bytes += super_version.active_memtable.size())
                .or_insert_with(|| super_version.active_memtable.size());

            for sealed in super_version.sealed_memtables.iter() {
                set.entry(sealed.id)
                    .and_modify(|bytes| *bytes += sealed.size())
                    .or_insert_with(|| sealed.size());
            }
        }

        set.into_values().sum()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn free_list_len(&self) -> usize {
        self.len().saturating_sub(1)
    }

    pub fn maintenance(&mut self, folder: &Path, gc_watermark: SeqNo) -> crate::Result<()> {
        remove_version_files(self.collect_garbage(folder, gc_watermark))
    }

    /// cortex patch (vendor/README.md): the in-memory half of [`SuperVersions::maintenance`]:
    /// takes the versions below the watermark out of the history and returns them with
    /// their files, for [`remove_version_files`] once the write lock is released. Neither
    /// half is free: the last version holding a flushed memtable frees its whole skiplist
    /// when dropped (milliseconds for 16 MiB), and unlinking waits for the device on a file
    /// system mounted with `discard`; writers read-lock the history for every insert. A
    /// file left behind by a crash in between is removed at recovery
    /// (`Tree::cleanup_orphaned_version`).
    pub fn collect_garbage(&mut self, folder: &Path, gc_watermark: SeqNo) -> VersionGarbage {
        let mut garbage = VersionGarbage::default();

        if gc_watermark == 0 {
            return garbage;
        }

        if self.free_list_len() < 1 {
            return garbage;
        }

        log::trace!("Running manifest GC with watermark={gc_watermark}");

        if let Some(hi_idx) = self.0.iter().rposition(|x| x.seqno < gc_watermark) {
            for _ in 0..hi_idx {
                let Some(head) = self.0.pop_front() else {
                    break;
                };

                log::trace!(
                    "Removing version #{} (seqno={})",
                    head.version.id(),
                    head.seqno,
                );

                garbage
                    .files
                    .push(folder.join(format!("v{}", head.version.id())));
                garbage.versions.push(head);
            }
        }

        log::trace!("Manifest GC done, version length now {}", self.0.len());

        garbage
    }

    /// cortex patch (vendor/README.md): installs a version that [`persist_next_version`]
    /// computed and persisted, over the latest super version's memtables (which a rotation
    /// may have changed meanwhile); `memtables` makes the transition's own change to them
    /// (a flush releases the sealed memtables it wrote). Takes the moment a push takes, so
    /// that writers, which read-lock the history for every insert, never wait for a disk.
    pub(crate) fn install_version(
        &mut self,
        version: Version,
        memtables: impl FnOnce(&mut SuperVersion),
        seqno: &SequenceNumberCounter,
        visible_seqno: &SequenceNumberCounter,
    ) {
        let mut next = self.latest_version();
        next.version = version;
        memtables(&mut next);
        next.seqno = seqno.next();
        let seqno = next.seqno;
        self.append_version(next);
        visible_seqno.fetch_max(seqno + 1);
    }

    /// Modifies the level manifest atomically.
    ///
    /// The function accepts a transition function that receives the current version
    /// and returns a new version.
    ///
    /// The function takes care of persisting the version changes on disk.
    pub(crate) fn upgrade_version<F: FnOnce(&SuperVersion) -> crate::Result<SuperVersion>>(
        &mut self,
        tree_path: &Path,
        f: F,
        seqno: &SequenceNumberCounter,
        visible_seqno: &SequenceNumberCounter,
    ) -> crate::Result<()> {
        self.upgrade_version_with_seqno(tree_path, f, seqno.next(), visible_seqno)
    }

    /// Like `upgrade_version`, but takes an already-allocated sequence number.
    ///
    /// This is useful when the seqno must be coordinated with other operations
    /// (e.g., bulk ingestion where tables are recovered with the same seqno).
    pub(crate) fn upgrade_version_with_seqno<
        F: FnOnce(&SuperVersion) -> crate::Result<SuperVersion>,
    >(
        &mut self,
        tree_path: &Path,
        f: F,
        seqno: SeqNo,
        visible_seqno: &SequenceNumberCounter,
    ) -> crate::Result<()> {
        let mut next_version = f(&self.latest_version())?;
        next_version.seqno = seqno;
        log::trace!("Next version seqno={}", next_version.seqno);

        persist_version(tree_path, &next_version.version)?;
        self.append_version(next_version);

        visible_seqno.fetch_max(seqno + 1);

        Ok(())
    }

    pub fn append_version(&mut self, version: SuperVersion) {
        self.0.push_back(version);
    }

    pub fn replace_latest_version(&mut self, version: SuperVersion) {
        if self.0.pop_back().is_some() {
            self.0.push_back(version);
        }
    }

    pub fn latest_version(&self) -> SuperVersion {
        #[expect(clippy::expect_used, reason = "SuperVersion is expected to exist")]
        self.0
            .iter()
            .last()
            .cloned()
            .expect("should always have a SuperVersion")
    }

    pub fn get_version_for_snapshot(&self, seqno: SeqNo) -> SuperVersion {
        if seqno == 0 {
            #[expect(clippy::expect_used, reason = "SuperVersion is expected to exist")]
            return self
                .0
                .front()
                .cloned()
                .expect("should always find a SuperVersion");
        }

        let version = self
            .0
            .iter()
            .rev()
            .find(|version| version.seqno < seqno)
            .cloned();

        if version.is_none() {
            log::error!("Failed to find a SuperVersion for snapshot with seqno={seqno}");
            log::error!("SuperVersions:");

            for version in self.0.iter().rev() {
                log::error!("-> {}, seqno={}", version.version.id(), version.seqno);
            }
        }

        #[expect(clippy::expect_used, reason = "SuperVersion is expected to exist")]
        version.expect("should always find a SuperVersion")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_log::test;

    #[test]
    fn super_version_gc_above_watermark() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 1,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 2,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 0)?;

        assert_eq!(history.free_list_len(), 2);

        Ok(())
    }

    #[test]
    fn super_version_gc_below_watermark_simple() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 1,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 2,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 3)?;

        assert_eq!(history.len(), 1);

        Ok(())
    }

    #[test]
    fn super_version_gc_below_watermark_simple_2() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 1,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 2,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 8,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 3)?;

        assert_eq!(history.len(), 2);

        Ok(())
    }

    #[test]
    fn super_version_gc_below_watermark_keep() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 8,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 3)?;

        assert_eq!(history.len(), 2);

        Ok(())
    }

    #[test]
    fn super_version_gc_below_watermark_shadowed() -> crate::Result<()> {
        let mut history = SuperVersions(
            vec![
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 0,
                },
                SuperVersion {
                    active_memtable: Arc::new(Memtable::new(0)),
                    sealed_memtables: Arc::default(),
                    version: Version::new(0, crate::TreeType::Standard),
                    seqno: 2,
                },
            ]
            .into(),
        );

        history.maintenance(Path::new("."), 3)?;

        assert_eq!(history.len(), 1);

        Ok(())
    }
}

/// cortex patch (vendor/README.md): what [`SuperVersions::collect_garbage`] took out of the
/// history, to be disposed of with no lock held.
#[derive(Default)]
pub struct VersionGarbage {
    files: Vec<PathBuf>,
    versions: Vec<SuperVersion>,
}

/// cortex patch (vendor/README.md): drops the versions [`SuperVersions::collect_garbage`]
/// took out (and with the last of them any memtable no version holds any more) and removes
/// their files.
pub fn remove_version_files(garbage: VersionGarbage) -> crate::Result<()> {
    drop(garbage.versions);
    for path in garbage.files {
        if path.try_exists()? {
            crate::file::retry_transient_io(|| std::fs::remove_file(&path))?;
        }
    }
    Ok(())
}

/// cortex patch (vendor/README.md): the first half of a version upgrade that holds the
/// history's write lock only to install. Computes the next [`Version`] from the latest with
/// `f` and persists it (the version file, its fsync, the directory's, and `current`),
/// holding no lock on the history but the moment a clone of the latest takes.
///
/// The caller must hold the tree's compaction state lock from before it computed what `f`
/// needs until [`SuperVersions::install_version`] returns: every change of the persisted
/// version holds that lock, so the version cannot change in between (memtables can, and
/// `install_version` keeps them).
fn persist_next_version(
    history: &RwLock<SuperVersions>,
    tree_path: &Path,
    f: impl FnOnce(&Version) -> crate::Result<Version>,
) -> crate::Result<Version> {
    #[expect(clippy::expect_used, reason = "lock is expected to not be poisoned")]
    let current = history.read().expect("lock is poisoned").latest_version();
    let next = f(&current.version)?;
    persist_version(tree_path, &next)?;
    Ok(next)
}

/// cortex patch: [`persist_next_version`], then, under the write lock,
/// [`SuperVersions::install_version`] and [`SuperVersions::collect_garbage`] below
/// `gc_watermark`. Returns the garbage, for [`remove_version_files`] (no lock held).
pub(crate) fn upgrade_version_outside_lock(
    history: &RwLock<SuperVersions>,
    tree_path: &Path,
    f: impl FnOnce(&Version) -> crate::Result<Version>,
    memtables: impl FnOnce(&mut SuperVersion),
    seqno: &SequenceNumberCounter,
    visible_seqno: &SequenceNumberCounter,
    gc_watermark: SeqNo,
) -> crate::Result<VersionGarbage> {
    let version = persist_next_version(history, tree_path, f)?;
    #[expect(clippy::expect_used, reason = "lock is expected to not be poisoned")]
    let mut lock = history.write().expect("lock is poisoned");
    lock.install_version(version, memtables, seqno, visible_seqno);
    Ok(lock.collect_garbage(tree_path, gc_watermark))
}
