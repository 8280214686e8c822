//! Read-your-writes for one batch: the batch's writes in a small ordered map over a snapshot
//! taken when the batch began, committed as one fjall `OwnedWriteBatch`.
//!
//! fjall's own write transaction gives the same semantics but inserts every write into a
//! skiplist memtable of its own and again into the real memtable at commit; this map is much
//! cheaper and the writer is single-threaded anyway.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use fjall::{Database, Keyspace, OwnedWriteBatch, PersistMode, Readable, Slice, Snapshot};

/// A keyspace with its index in the overlay.
pub(crate) struct Ks {
    pub(crate) id: usize,
    pub(crate) ks: Keyspace,
}

impl Ks {
    /// The fjall keyspace (for snapshot reads).
    pub(crate) fn inner(&self) -> &Keyspace {
        &self.ks
    }
}

#[derive(Clone)]
enum Write {
    Put(Slice),
    Del,
    DelWeak,
}

/// One key/value from a range scan, shaped like fjall's `Guard`.
pub(crate) struct Item(fjall::Result<(Slice, Slice)>);

impl Item {
    pub(crate) fn key(self) -> fjall::Result<Slice> {
        self.0.map(|(k, _)| k)
    }

    pub(crate) fn into_inner(self) -> fjall::Result<(Slice, Slice)> {
        self.0
    }
}

type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

fn owned<K: AsRef<[u8]>, R: RangeBounds<K>>(r: &R) -> Bounds {
    let own = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (own(r.start_bound()), own(r.end_bound()))
}

fn is_empty(b: &Bounds) -> bool {
    match (&b.0, &b.1) {
        (Bound::Included(a), Bound::Included(z)) => a > z,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(z))
        | (Bound::Excluded(a), Bound::Included(z)) => a >= z,
        _ => false,
    }
}

/// The range of keys starting with `prefix`.
pub(crate) fn prefix_range(prefix: &[u8]) -> Bounds {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}

/// Reads that work the same on a snapshot and on a batch in progress.
pub(crate) trait View {
    /// Point read.
    fn get(&self, ks: &Ks, key: impl AsRef<[u8]>) -> fjall::Result<Option<Slice>>;

    /// Forward scan.
    fn scan(&self, ks: &Ks, b: Bounds) -> Box<dyn Iterator<Item = Item> + '_>;

    /// Backward scan (largest key first).
    fn scan_rev(&self, ks: &Ks, b: Bounds) -> Box<dyn Iterator<Item = Item> + '_>;

    /// True when the key exists.
    fn contains_key(&self, ks: &Ks, key: impl AsRef<[u8]>) -> fjall::Result<bool> {
        Ok(self.get(ks, key)?.is_some())
    }

    /// Forward scan of a range.
    fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        ks: &Ks,
        r: R,
    ) -> Box<dyn Iterator<Item = Item> + '_> {
        self.scan(ks, owned(&r))
    }

    /// Forward scan of a prefix.
    fn prefix(&self, ks: &Ks, p: impl AsRef<[u8]>) -> Box<dyn Iterator<Item = Item> + '_> {
        self.scan(ks, prefix_range(p.as_ref()))
    }
}

impl View for Snapshot {
    fn get(&self, ks: &Ks, key: impl AsRef<[u8]>) -> fjall::Result<Option<Slice>> {
        Readable::get(self, &ks.ks, key)
    }

    fn scan(&self, ks: &Ks, b: Bounds) -> Box<dyn Iterator<Item = Item> + '_> {
        if is_empty(&b) {
            return Box::new(std::iter::empty());
        }
        Box::new(Readable::range(self, &ks.ks, b).map(|g| Item(g.into_inner())))
    }

    fn scan_rev(&self, ks: &Ks, b: Bounds) -> Box<dyn Iterator<Item = Item> + '_> {
        if is_empty(&b) {
            return Box::new(std::iter::empty());
        }
        Box::new(
            Readable::range(self, &ks.ks, b)
                .rev()
                .map(|g| Item(g.into_inner())),
        )
    }
}

/// A key the batch wrote: fjall's own `Slice`, so the commit hands it to the batch as it
/// is instead of copying it into a second allocation (keys over 20 bytes live on the
/// heap), ordered as plain bytes: one comparison of the two byte strings, where `Slice`'s
/// own order first compares a 4-byte prefix (callgrind: 5 % more instructions per group
/// read with it).
#[derive(Clone, PartialEq, Eq)]
struct Key(Slice);

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0[..].cmp(&other.0[..])
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// A batch in progress: the snapshot it started from plus its own writes.
pub(crate) struct Overlay {
    snap: Snapshot,
    writes: Vec<BTreeMap<Key, Write>>,
}

impl Overlay {
    pub(crate) fn new(snap: Snapshot, keyspaces: usize) -> Self {
        Overlay {
            snap,
            writes: vec![BTreeMap::new(); keyspaces],
        }
    }

    pub(crate) fn insert(&mut self, ks: &Ks, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.writes[ks.id].insert(
            Key(Slice::from(key.as_ref())),
            Write::Put(Slice::from(value.as_ref())),
        );
    }

    pub(crate) fn remove(&mut self, ks: &Ks, key: impl AsRef<[u8]>) {
        self.writes[ks.id].insert(Key(Slice::from(key.as_ref())), Write::Del);
    }

    /// True when this batch wrote (or removed) the key.
    pub(crate) fn wrote(&self, ks: &Ks, key: &[u8]) -> bool {
        self.writes[ks.id].contains_key(key)
    }

    /// A tombstone that vanishes with the one insertion it shadows: only for keys that are
    /// written once and never again (entries, lane index).
    pub(crate) fn remove_weak(&mut self, ks: &Ks, key: impl AsRef<[u8]>) {
        self.writes[ks.id].insert(Key(Slice::from(key.as_ref())), Write::DelWeak);
    }

    /// The last key in a range, seeing this batch's writes.
    pub(crate) fn last_key<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        ks: &Ks,
        r: R,
    ) -> fjall::Result<Option<Slice>> {
        let b = owned(&r);
        if is_empty(&b) {
            return Ok(None);
        }
        let map = &self.writes[ks.id];
        let mine = map
            .range::<[u8], _>((
                b.0.as_ref().map(Vec::as_slice),
                b.1.as_ref().map(Vec::as_slice),
            ))
            .rev()
            .find(|(_, w)| matches!(w, Write::Put(_)))
            .map(|(k, _)| k.0.clone());
        let mut base = None;
        for g in Readable::range(&self.snap, &ks.ks, b).rev() {
            let k = g.key()?;
            if !map.contains_key(&k[..]) {
                base = Some(k);
                break;
            }
        }
        Ok(match (mine, base) {
            (Some(a), Some(b)) => Some(if a > b { a } else { b }),
            (a, b) => a.or(b),
        })
    }

    /// Number of keys written.
    pub(crate) fn len(&self) -> usize {
        self.writes.iter().map(BTreeMap::len).sum()
    }

    /// Commits every write in one atomic batch.
    pub(crate) fn commit(
        self,
        db: &Database,
        spaces: &[&Ks],
        mode: PersistMode,
    ) -> fjall::Result<()> {
        let n = self.len();
        if n == 0 {
            return Ok(());
        }
        let mut batch = OwnedWriteBatch::with_capacity(db.clone(), n).durability(Some(mode));
        for (id, map) in self.writes.into_iter().enumerate() {
            let ks = &spaces[id].ks;
            for (Key(k), w) in map {
                match w {
                    Write::Put(v) => batch.insert(ks, k, v),
                    Write::Del => batch.remove(ks, k),
                    Write::DelWeak => batch.remove_weak(ks, k),
                }
            }
        }
        batch.commit()
    }
}

impl View for Overlay {
    fn get(&self, ks: &Ks, key: impl AsRef<[u8]>) -> fjall::Result<Option<Slice>> {
        match self.writes[ks.id].get(key.as_ref()) {
            Some(Write::Put(v)) => Ok(Some(v.clone())),
            Some(Write::Del | Write::DelWeak) => Ok(None),
            None => Readable::get(&self.snap, &ks.ks, key),
        }
    }

    fn scan(&self, ks: &Ks, b: Bounds) -> Box<dyn Iterator<Item = Item> + '_> {
        self.merged(ks, b, false)
    }

    fn scan_rev(&self, ks: &Ks, b: Bounds) -> Box<dyn Iterator<Item = Item> + '_> {
        self.merged(ks, b, true)
    }
}

impl Overlay {
    /// The batch's writes in `b` merged over the snapshot's keys, in either direction.
    fn merged(&self, ks: &Ks, b: Bounds, rev: bool) -> Box<dyn Iterator<Item = Item> + '_> {
        if is_empty(&b) {
            return Box::new(std::iter::empty());
        }
        let mine = self.writes[ks.id].range::<[u8], _>((
            b.0.as_ref().map(Vec::as_slice),
            b.1.as_ref().map(Vec::as_slice),
        ));
        let base = Readable::range(&self.snap, &ks.ks, b).map(|g| g.into_inner());
        if rev {
            Box::new(Merge {
                mine: mine.rev().peekable(),
                base: base.rev().peekable(),
                rev,
            })
        } else {
            Box::new(Merge {
                mine: mine.peekable(),
                base: base.peekable(),
                rev,
            })
        }
    }
}

/// The batch's writes merged over the snapshot, in key order (`rev`: largest first).
struct Merge<'a, M, B>
where
    M: Iterator<Item = (&'a Key, &'a Write)>,
    B: Iterator<Item = fjall::Result<(Slice, Slice)>>,
{
    mine: std::iter::Peekable<M>,
    base: std::iter::Peekable<B>,
    rev: bool,
}

impl<'a, M, B> Iterator for Merge<'a, M, B>
where
    M: Iterator<Item = (&'a Key, &'a Write)>,
    B: Iterator<Item = fjall::Result<(Slice, Slice)>>,
{
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            let order = match (self.mine.peek(), self.base.peek()) {
                (None, None) => return None,
                (None, Some(_)) | (Some(_), Some(Err(_))) => return self.base.next().map(Item),
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some((mk, _)), Some(Ok((bk, _)))) if self.rev => bk[..].cmp(&mk.0[..]),
                (Some((mk, _)), Some(Ok((bk, _)))) => mk.0[..].cmp(&bk[..]),
            };
            match order {
                std::cmp::Ordering::Greater => return self.base.next().map(Item),
                std::cmp::Ordering::Equal => {
                    self.base.next();
                }
                std::cmp::Ordering::Less => {}
            }
            if let Some((k, Write::Put(v))) = self.mine.next() {
                return Some(Item(Ok((k.0.clone(), v.clone()))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sees_writes_over_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path()).open().unwrap();
        let ks = Ks {
            id: 0,
            ks: db
                .keyspace("t", fjall::KeyspaceCreateOptions::default)
                .unwrap(),
        };
        for k in ["a", "c", "e", "g"] {
            ks.ks.insert(k, k).unwrap();
        }
        let mut ov = Overlay::new(db.snapshot(), 1);
        ov.insert(&ks, "b", "B");
        ov.insert(&ks, "c", "C");
        ov.remove(&ks, "e");
        ov.insert(&ks, "h", "H");
        ov.remove_weak(&ks, "x");
        let all: Vec<(String, String)> = ov
            .range(&ks, "a".."z")
            .map(|i| {
                let (k, v) = i.into_inner().unwrap();
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect();
        let want = [("a", "a"), ("b", "B"), ("c", "C"), ("g", "g"), ("h", "H")];
        assert_eq!(all, want.map(|(a, b)| (a.to_string(), b.to_string())));
        assert_eq!(ov.get(&ks, "e").unwrap(), None);
        assert_eq!(ov.get(&ks, "c").unwrap().as_deref(), Some(&b"C"[..]));
        assert_eq!(ov.get(&ks, "g").unwrap().as_deref(), Some(&b"g"[..]));
        assert_eq!(
            ov.last_key(&ks, "a"..="g").unwrap().as_deref(),
            Some(&b"g"[..])
        );
        assert_eq!(
            ov.last_key(&ks, "a"..="f").unwrap().as_deref(),
            Some(&b"c"[..])
        );
        let rev: Vec<Vec<u8>> = ov
            .scan_rev(&ks, owned(&("a".."z")))
            .map(|i| i.key().unwrap().to_vec())
            .collect();
        assert_eq!(rev, [&b"h"[..], b"g", b"c", b"b", b"a"]);
        assert_eq!(ov.range(&ks, "d"..="d").count(), 0);
        assert_eq!(ov.prefix(&ks, "").count(), 5);
        ov.commit(&db, &[&ks], PersistMode::Buffer).unwrap();
        let after: Vec<_> = ks.ks.iter().map(|g| g.key().unwrap().to_vec()).collect();
        assert_eq!(
            after,
            vec![
                b"a".to_vec(),
                b"b".to_vec(),
                b"c".to_vec(),
                b"g".to_vec(),
                b"h".to_vec()
            ]
        );
    }
}
