//! Offline and online maintenance: a consistent backup of a live store, and a full check of
//! a store's records (CRC) and indexes.
//!
//! Backup is logical: it copies every key and value of one committed snapshot into a new
//! database with the same keyspaces. The snapshot is taken between two commits, so the copy
//! is exactly the store as of one commit; the writer is never paused and background
//! compaction cannot tear it (fjall has no file-level checkpoint API, and its table files
//! are rewritten by compaction at any time).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use fjall::{Database, Readable};

use crate::codec::{self, Kind};
use crate::error::{Error, Result};
use crate::id::{Lane, StreamId};
use crate::keys;
use crate::keyspaces::{open_keyspaces, Keyspaces};
use crate::meta::{
    ConsumerMeta, GroupMeta, PendingEntry, StreamMeta, SystemMeta, UNOWNED_CONSUMER,
};
use crate::record::Record;
use crate::{Store, StoreConfig};

/// Writes of one backup batch before it is committed (bounds the copy's memory).
const BACKUP_BATCH_BYTES: usize = 8 << 20;

/// What a backup copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Keys copied.
    pub keys: u64,
    /// Bytes of keys and values copied.
    pub bytes: u64,
    /// Streams in the copy.
    pub streams: u64,
    /// The log progress recorded in the copied commit ([`Store::apply_logged`]).
    pub progress: Option<Vec<u8>>,
}

impl Store {
    /// Copies the store as of the last commit into a new store at `dir` (which must not
    /// exist or be empty), then flushes and fsyncs it. Writers go on meanwhile: the copy
    /// reads one snapshot. Runs for as long as the data takes to copy; call it off the
    /// async runtime.
    pub fn backup_to(&self, dir: &Path) -> Result<BackupReport> {
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", dir.display())))?
                .next()
                .is_some()
        {
            return Err(Error::InvalidArgument(format!(
                "backup directory {} is not empty",
                dir.display()
            )));
        }
        let (snap, streams) = {
            let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
            (cat.snap.clone(), cat.streams.len() as u64)
        };
        let dest = Store::open(dir, self.cfg.clone())?;
        let mut report = BackupReport {
            streams,
            progress: crate::keyspaces::read_progress(&snap, &self.ks)?,
            ..BackupReport::default()
        };
        for (from, to) in self.ks.all().into_iter().zip(dest.ks.all()) {
            let mut batch = dest.db.batch();
            let mut pending = 0usize;
            for item in Readable::iter(&snap, from.inner()) {
                let (k, v) = item.into_inner()?;
                pending += k.len() + v.len();
                report.keys += 1;
                report.bytes += (k.len() + v.len()) as u64;
                batch.insert(to.inner(), k, v);
                if pending >= BACKUP_BATCH_BYTES {
                    batch.commit()?;
                    batch = dest.db.batch();
                    pending = 0;
                }
            }
            batch.commit()?;
        }
        dest.checkpoint()?;
        drop(dest);
        trim_journals(dir)?;
        Ok(report)
    }
}

/// The last bytes of every complete batch in a fjall journal (its `End` entry's trailer).
const JOURNAL_BATCH_TRAILER: &[u8] = b"FJL\x03";

/// Cuts the zeros off the end of a closed, checkpointed store's journals. fjall preallocates
/// each journal to 64 MiB, which a snapshot sent to a peer or a backup copied off the host
/// would carry along; its reader stops at the first zero tag anyway (truncating there), so
/// the trimmed file opens exactly as the full one did. A journal is trimmed only where what
/// is left is empty or ends in a whole batch, so no written byte is ever cut.
fn trim_journals(dir: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e: std::io::Error| Error::Storage(fjall::Error::Io(e));
    for e in std::fs::read_dir(dir).map_err(io)? {
        let path = e.map_err(io)?.path();
        if path.extension().is_none_or(|x| x != "jnl") {
            continue;
        }
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        // The end of the data: scan back in chunks past the zeros.
        let mut end = len;
        let mut chunk = vec![0u8; 1 << 20];
        while end > 0 {
            let n = chunk.len().min(end as usize);
            f.seek(SeekFrom::Start(end - n as u64)).map_err(io)?;
            f.read_exact(&mut chunk[..n]).map_err(io)?;
            match chunk[..n].iter().rposition(|&b| b != 0) {
                Some(p) => {
                    end = end - n as u64 + p as u64 + 1;
                    break;
                }
                None => end -= n as u64,
            }
        }
        if end == len {
            continue;
        }
        let tail = JOURNAL_BATCH_TRAILER.len() as u64;
        let whole = end == 0
            || (end >= tail && {
                let mut t = [0u8; 4];
                f.seek(SeekFrom::Start(end - tail)).map_err(io)?;
                f.read_exact(&mut t).map_err(io)?;
                t == JOURNAL_BATCH_TRAILER
            });
        if whole {
            f.set_len(end).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
    }
    Ok(())
}

/// One problem [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The stream it concerns (empty: store-wide).
    pub stream: Vec<u8>,
    /// What is wrong.
    pub what: String,
    /// Entry IDs concerned (at most [`IDS_PER_DAMAGE`]).
    pub ids: Vec<StreamId>,
}

/// IDs listed per damage line; more are counted in its text.
pub const IDS_PER_DAMAGE: usize = 20;

/// What [`verify`] checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Streams checked.
    pub streams: u64,
    /// Entries read (each one's CRC checked).
    pub entries: u64,
    /// Groups checked.
    pub groups: u64,
    /// Pending entries checked.
    pub pending: u64,
    /// Other records checked (consumers, idempotency keys, system).
    pub other: u64,
    /// Problems, in the order found.
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    fn damage(&mut self, stream: &[u8], what: impl Into<String>, ids: Vec<StreamId>) {
        self.damage.push(Damage {
            stream: stream.to_vec(),
            what: what.into(),
            ids,
        });
    }
}

/// Collects bad IDs of one kind, listing the first few.
#[derive(Default)]
struct Bad {
    n: u64,
    ids: Vec<StreamId>,
    first_reason: Option<String>,
}

impl Bad {
    fn add(&mut self, id: Option<StreamId>, reason: impl FnOnce() -> String) {
        self.n += 1;
        if let Some(id) = id {
            if self.ids.len() < IDS_PER_DAMAGE {
                self.ids.push(id);
            }
        }
        if self.first_reason.is_none() {
            self.first_reason = Some(reason());
        }
    }

    fn report(self, r: &mut VerifyReport, stream: &[u8], what: &str) {
        if self.n > 0 {
            let why = self.first_reason.unwrap_or_default();
            r.damage(
                stream,
                format!("{} {what} (first: {why})", self.n),
                self.ids,
            );
        }
    }
}

/// Checks a store that no process has open: every record's envelope and CRC, and that the
/// indexes agree with the records (lane index, pending lists, per-consumer pending lists,
/// the counts in stream, group and consumer metadata). Never writes.
pub fn verify(path: &Path, cfg: &StoreConfig) -> Result<VerifyReport> {
    if !path.join("version").exists() && !path.join("keyspaces").exists() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no store",
            path.display()
        )));
    }
    let db = Database::builder(path)
        .cache_size(cfg.cache_bytes)
        .max_journaling_size(cfg.journal_bytes_max)
        .open()
        .map_err(|e| crate::damage::why_unopenable(path, e))?;
    let ks = open_keyspaces(&db, cfg)?;
    check(&db, &ks)
}

impl Store {
    /// [`verify`] on the open store, as of the last commit: what a broker runs after it
    /// starts, so damage on the disk is reported without stopping it. Reads only.
    pub fn scrub(&self) -> Result<VerifyReport> {
        let mut report = check(&self.db, &self.ks)?;
        for why in self.pending_index_differences()? {
            report.damage(b"", why, Vec::new());
        }
        Ok(report)
    }
}

fn check(db: &Database, ks: &Keyspaces) -> Result<VerifyReport> {
    let snap = db.snapshot();
    let mut r = VerifyReport::default();
    if let Some(v) = Readable::get(&snap, ks.sys.inner(), keys::SYSTEM_KEY)? {
        r.other += 1;
        if let Err(why) = codec::decode::<SystemMeta>(Kind::System, &v) {
            r.damage(b"", format!("system record: {why}"), Vec::new());
        }
    }
    let mut sids = HashMap::new();
    for item in Readable::iter(&snap, ks.streams.inner()) {
        let (k, v) = match item.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                unreadable(&mut r, b"", "stream metadata (the streams after it)", e);
                break;
            }
        };
        let Some((_, name)) = keys::parse_stream(&k) else {
            r.damage(b"", "a stream key is too short", Vec::new());
            continue;
        };
        r.streams += 1;
        match StreamMeta::decode(&v) {
            Ok(meta) => {
                sids.insert(meta.stream_id, name.to_vec());
                verify_stream(&snap, ks, name, &meta, &mut r)?;
            }
            Err(why) => r.damage(
                name,
                format!("stream metadata unreadable: {why}"),
                Vec::new(),
            ),
        }
    }
    let mut bad_idem: BTreeMap<u64, Bad> = BTreeMap::new();
    for item in Readable::iter(&snap, ks.idem.inner()) {
        let (k, v) = match item.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                unreadable(&mut r, b"", "idempotency records", e);
                break;
            }
        };
        r.other += 1;
        if let Err(why) = crate::idmp::check_value(k.get(8..).unwrap_or_default(), &v) {
            let sid = k
                .get(..8)
                .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
            bad_idem.entry(sid).or_default().add(None, || why);
        }
    }
    for (sid, bad) in bad_idem {
        let name = sids.get(&sid).cloned().unwrap_or_default();
        bad.report(&mut r, &name, "idempotency records unreadable");
    }
    Ok(r)
}

/// A damaged disk block met while scanning `what`: reported with the stream, and that scan
/// ends there (the check goes on with the rest). Entries get a finer treatment
/// ([`scan_entries`] steps over the block).
fn unreadable(r: &mut VerifyReport, stream: &[u8], what: &str, e: impl std::fmt::Display) {
    r.damage(
        stream,
        format!("{what} cannot be read from some point on: the disk block holding them is damaged ({e})"),
        Vec::new(),
    );
}

fn verify_stream(
    snap: &fjall::Snapshot,
    ks: &Keyspaces,
    name: &[u8],
    meta: &StreamMeta,
    r: &mut VerifyReport,
) -> Result<()> {
    // Memory stays bounded by the number of problems, not the stream's size: each index
    // key is checked against its record with a point read, in both directions.
    let sid = meta.stream_id;
    let mut bad = Bad::default();
    let mut unindexed = Bad::default();
    let mut count = 0u64;
    let spans = scan_entries(snap, ks, sid, |k, v| {
        let id = keys::trailing_id(k);
        count += 1;
        r.entries += 1;
        match codec::decode::<Record>(Kind::Entry, v) {
            Ok(rec) => {
                if let (Some(id), true) = (id, rec.meta.lane != Lane::Normal) {
                    let lane_key = keys::lane(sid, rec.meta.lane, id);
                    // A damaged lane-index block is reported by the lane scan below.
                    if matches!(Readable::get(snap, ks.lanes.inner(), lane_key), Ok(None)) {
                        unindexed.add(Some(id), || "not in the lane index".into());
                    }
                }
            }
            Err(why) => bad.add(id, || why),
        }
        Ok(())
    })?;
    for (from, to, why) in spans {
        r.damage(
            name,
            format!(
                "entries from {from} (right after the last readable one) up to {} cannot be read: the disk block holding them is damaged ({why})",
                to.map_or_else(|| "the end of the stream".to_string(), |t| format!("before {t}"))
            ),
            vec![from],
        );
    }
    bad.report(r, name, "entries fail their CRC or cannot be decoded");
    if count != meta.length {
        r.damage(
            name,
            format!(
                "the stream's metadata says {} entries, {count} are stored",
                meta.length
            ),
            Vec::new(),
        );
    }
    let mut orphan = Bad::default();
    for item in Readable::prefix(snap, ks.lanes.inner(), keys::prefix(sid)) {
        let k = match item.key() {
            Ok(k) => k,
            Err(e) => {
                unreadable(r, name, "the lane index", e);
                break;
            }
        };
        let id = keys::trailing_id(&k);
        let lane = k.get(8).and_then(|&b| Lane::from_index(usize::from(b)));
        let Some(id) = id else {
            orphan.add(None, || "malformed key".into());
            continue;
        };
        match Readable::get(snap, ks.entries.inner(), keys::id_key(sid, id)) {
            Ok(None) => orphan.add(Some(id), || "no such entry".into()),
            // A damaged entry block is reported by the entry scan above.
            Err(_) => {}
            // A damaged record's lane is unknown; it is reported above.
            Ok(Some(v)) => match codec::decode::<Record>(Kind::Entry, &v) {
                Ok(rec) if Some(rec.meta.lane) != lane => {
                    orphan.add(Some(id), || "lane does not match the entry's".into())
                }
                _ => {}
            },
        }
    }
    orphan.report(r, name, "lane index keys point at no entry of that lane");
    unindexed.report(r, name, "priority entries missing from the lane index");
    for item in Readable::prefix(snap, ks.groups.inner(), keys::prefix(sid)) {
        let (k, v) = match item.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                unreadable(r, name, "group metadata", e);
                break;
            }
        };
        let gname = String::from_utf8_lossy(k.get(8..).unwrap_or_default()).into_owned();
        r.groups += 1;
        match codec::decode::<GroupMeta>(Kind::GroupMeta, &v) {
            Ok(g) => verify_group(snap, ks, name, &gname, &g, r)?,
            Err(why) => r.damage(
                name,
                format!("group '{gname}' metadata unreadable: {why}"),
                Vec::new(),
            ),
        }
    }
    Ok(())
}

/// Calls `f` for every readable entry of stream `sid`, in ID order, stepping over disk
/// blocks that fail fjall's checksum: each is returned as `(first unreadable ID, first
/// readable ID after it or None at the end, why)`. Finding where a damaged block ends costs a
/// few dozen seeks (a gallop, then a bisection over IDs: an iterator that starts past the
/// block never loads it).
fn scan_entries(
    snap: &fjall::Snapshot,
    ks: &Keyspaces,
    sid: u64,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<Vec<(StreamId, Option<StreamId>, String)>> {
    let entries = ks.entries.inner();
    let end = keys::id_key(sid, StreamId::MAX);
    // Ok(true): the first item from `from` on reads (or there is none).
    let readable = |from: StreamId| -> bool {
        match Readable::range(snap, entries, keys::id_key(sid, from)..=end).next() {
            None => true,
            Some(g) => g.into_inner().is_ok(),
        }
    };
    let as_u128 = |id: StreamId| (u128::from(id.ms) << 64) | u128::from(id.seq);
    let of_u128 = |n: u128| StreamId::new((n >> 64) as u64, n as u64);
    let mut spans = Vec::new();
    let mut start = StreamId::MIN;
    loop {
        let mut last = None;
        let mut failure = None;
        for item in Readable::range(snap, entries, keys::id_key(sid, start)..=end) {
            match item.into_inner() {
                Ok((k, v)) => {
                    last = keys::trailing_id(&k);
                    f(&k, &v)?;
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let Some(why) = failure else {
            return Ok(spans);
        };
        let bad = match last {
            Some(id) => match id.next() {
                Some(n) => n,
                None => return Ok(spans),
            },
            None => start,
        };
        // Gallop to a readable start, then bisect: `lo` unreadable, `hi` readable.
        let lo0 = as_u128(bad);
        let (mut lo, mut hi) = (lo0, None);
        let mut step: u128 = 1;
        while lo0.checked_add(step).is_some() {
            let probe = lo0 + step;
            if readable(of_u128(probe)) {
                hi = Some(probe);
                break;
            }
            lo = probe;
            step = step.saturating_mul(4);
        }
        let Some(mut hi) = hi else {
            spans.push((bad, None, why));
            return Ok(spans);
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if readable(of_u128(mid)) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let resume = of_u128(hi);
        // The first key actually present at or after the resume point names the span's end.
        let next = Readable::range(snap, entries, keys::id_key(sid, resume)..=end)
            .next()
            .and_then(|g| g.key().ok())
            .and_then(|k| keys::trailing_id(&k));
        spans.push((bad, next, why));
        match next {
            Some(n) => start = n,
            None => return Ok(spans),
        }
    }
}

fn verify_group(
    snap: &fjall::Snapshot,
    ks: &Keyspaces,
    name: &[u8],
    gname: &str,
    g: &GroupMeta,
    r: &mut VerifyReport,
) -> Result<()> {
    let gid = g.group_id;
    // Consumer ID -> (name, pending it records, pending entries it owns).
    let mut consumers: HashMap<u64, (String, u64, u64)> = HashMap::new();
    for item in Readable::prefix(snap, ks.consumers.inner(), keys::prefix(gid)) {
        let (k, v) = match item.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                unreadable(r, name, &format!("group '{gname}': consumer metadata"), e);
                break;
            }
        };
        r.other += 1;
        let cname = String::from_utf8_lossy(k.get(8..).unwrap_or_default()).into_owned();
        match codec::decode::<ConsumerMeta>(Kind::ConsumerMeta, &v) {
            Ok(c) => {
                consumers.insert(c.consumer_id, (cname, c.pending, 0));
            }
            Err(why) => r.damage(
                name,
                format!("group '{gname}': consumer '{cname}' metadata unreadable: {why}"),
                Vec::new(),
            ),
        }
    }
    let mut bad = Bad::default();
    let mut orphans = Bad::default();
    let mut count = 0u64;
    for item in Readable::prefix(snap, ks.pel.inner(), keys::prefix(gid)) {
        let (k, v) = match item.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                unreadable(r, name, &format!("group '{gname}': pending entries"), e);
                break;
            }
        };
        let id = keys::trailing_id(&k);
        count += 1;
        r.pending += 1;
        match codec::decode::<PendingEntry>(Kind::Pending, &v) {
            Ok(p) => match consumers.get_mut(&p.consumer_id) {
                Some(c) => c.2 += 1,
                None if p.consumer_id == UNOWNED_CONSUMER => {}
                None => orphans.add(id, || format!("owner {} unknown", p.consumer_id)),
            },
            Err(why) => bad.add(id, || why),
        }
    }
    bad.report(
        r,
        name,
        &format!("pending entries of group '{gname}' unreadable"),
    );
    if count != g.pending {
        r.damage(
            name,
            format!(
                "group '{gname}': its metadata says {} pending, {count} are stored",
                g.pending
            ),
            Vec::new(),
        );
    }
    orphans.report(
        r,
        name,
        &format!("group '{gname}': pending entries owned by no consumer of the group"),
    );
    let mut counts: Vec<_> = consumers.into_values().collect();
    counts.sort();
    for (cname, said, found) in counts {
        if said != found {
            r.damage(
                name,
                format!(
                    "group '{gname}': consumer '{cname}' metadata says {said} pending, it owns {found}"
                ),
                Vec::new(),
            );
        }
    }
    Ok(())
}
