//! Store settings and limits.

use crate::error::{Error, Result};

/// When a committed batch reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is fsynced (`fdatasync`) before [`crate::Store::apply`] returns: a reply
    /// sent after `apply` survives power loss.
    SyncEachCommit,
    /// Commits are handed to the OS; [`crate::Store::persist`] fsyncs. The caller persists
    /// periodically (for example every second) and on shutdown: a crash of the process loses
    /// nothing, a power loss loses what was not yet persisted.
    Buffered,
}

/// Every bound a peer can push against. Crossing one is a typed error, never a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest stream name in bytes.
    pub stream_name_max: usize,
    /// Longest group or consumer name.
    pub group_name_max: usize,
    /// Most field/value pairs in one entry.
    pub fields_max: usize,
    /// Most bytes of fields and values in one entry.
    pub entry_bytes_max: usize,
    /// Most bytes of producer, header names and values together.
    pub meta_bytes_max: usize,
    /// Longest idempotency key.
    pub idempotency_key_max: usize,
    /// Longest nack error text (longer texts are cut, not refused).
    pub error_text_max: usize,
    /// Most entries one group read hands out.
    pub read_count_max: usize,
    /// Most IDs in one XDEL, XACK, XCLAIM or nack.
    pub ids_per_op_max: usize,
    /// Most entries one trim removes (the rest is left for the next trim).
    pub trim_per_op_max: u64,
    /// Most entries one read may skip to the dead-letter stream (expired, stale).
    pub dead_letters_per_read_max: usize,
    /// Most pending entries processed per group per tick.
    pub due_per_tick_max: usize,
    /// Most keys garbage collection deletes per tick.
    pub gc_keys_per_tick_max: usize,
    /// Most streams one group read names.
    pub streams_per_read_max: usize,
    /// Most dead letters one listing returns.
    pub dlq_list_max: usize,
    /// Most dead letters one redrive or purge moves.
    pub dlq_batch_max: usize,
    /// Most entries of a dead-letter stream one listing, redrive or purge examines.
    pub dlq_scan_max: usize,
    /// Furthest ahead of the commit's time a scheduled entry's delivery may be, ms.
    pub schedule_ahead_max_ms: u64,
    /// Most unfinished tasks one stream may hold (an agent's inbox: its open tasks).
    pub open_tasks_max: u64,
    /// Most changes one task's history keeps (progress parts past it are refused).
    pub task_history_max: usize,
    /// How long a finished task stays readable, ms.
    pub task_keep_ms: u64,
    /// Most task records one listing examines.
    pub task_scan_max: usize,
    /// IDMP IDs kept per producer of a stream that XCFGSET did not set (Redis's default).
    pub idmp_maxsize: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stream_name_max: 1024,
            group_name_max: 256,
            fields_max: 1024,
            entry_bytes_max: 1 << 20,
            meta_bytes_max: 16 << 10,
            idempotency_key_max: 256,
            error_text_max: 4096,
            read_count_max: 100_000,
            ids_per_op_max: 100_000,
            trim_per_op_max: 1_000_000,
            dead_letters_per_read_max: 1_000,
            due_per_tick_max: 10_000,
            gc_keys_per_tick_max: 100_000,
            streams_per_read_max: 1_000,
            dlq_list_max: 10_000,
            dlq_batch_max: 100_000,
            dlq_scan_max: 100_000,
            schedule_ahead_max_ms: 30 * 24 * 3600 * 1000,
            open_tasks_max: 10_000,
            task_history_max: 256,
            task_keep_ms: 24 * 3600 * 1000,
            task_scan_max: 100_000,
            idmp_maxsize: 100,
        }
    }
}

/// Store settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Durability of each commit.
    pub durability: Durability,
    /// Limits.
    pub limits: Limits,
    /// After this many consecutive hand-outs from a higher lane while a lower lane waits,
    /// one entry of a lower lane (the oldest waiting) is handed out. 0 = strict priority.
    pub starvation_guard: u32,
    /// How long an idempotency key is remembered.
    pub idempotency_window_ms: u64,
    /// fjall block cache size.
    pub cache_bytes: u64,
    /// Memtable size of the large keyspaces (entries, pending).
    pub memtable_bytes: u64,
    /// Most heap bytes the pending lists kept in memory for the ack path may take
    /// ([`crate::Store::pending_index`]); past it the largest groups are served from disk.
    pub pending_index_bytes: u64,
    /// Journal size at which fjall flushes memtables. Bounds the replay after a crash (a
    /// clean [`crate::Store::close`] leaves nothing to replay). At least 64 MiB.
    pub journal_bytes_max: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            durability: Durability::SyncEachCommit,
            limits: Limits::default(),
            starvation_guard: 8,
            idempotency_window_ms: 10 * 60 * 1000,
            cache_bytes: 32 << 20,
            memtable_bytes: 16 << 20,
            pending_index_bytes: 256 << 20,
            journal_bytes_max: 64 << 20,
        }
    }
}

impl StoreConfig {
    /// Checks the relations between settings.
    pub fn validate(&self) -> Result<()> {
        let l = &self.limits;
        let bad = |s: &str| Err(Error::InvalidArgument(format!("store config: {s}")));
        if l.stream_name_max == 0 || l.group_name_max == 0 || l.idempotency_key_max == 0 {
            return bad("name limits must be positive");
        }
        if l.fields_max == 0 || l.entry_bytes_max == 0 {
            return bad("entry limits must be positive");
        }
        if l.read_count_max == 0 || l.ids_per_op_max == 0 || l.due_per_tick_max == 0 {
            return bad("per-op limits must be positive");
        }
        if l.dead_letters_per_read_max == 0 || l.trim_per_op_max == 0 || l.gc_keys_per_tick_max == 0
        {
            return bad("per-op limits must be positive");
        }
        if l.streams_per_read_max == 0 || l.dlq_list_max == 0 || l.dlq_batch_max == 0 {
            return bad("per-op limits must be positive");
        }
        if l.dlq_scan_max < l.dlq_list_max || l.dlq_scan_max < l.dlq_batch_max {
            return bad("dlq_scan_max must be at least dlq_list_max and dlq_batch_max");
        }
        if l.open_tasks_max == 0 || l.task_scan_max == 0 {
            return bad("open_tasks_max and task_scan_max must be positive");
        }
        if l.task_history_max < 2 {
            return bad("task_history_max must be at least 2 (the first change and the last)");
        }
        if self.journal_bytes_max < (64 << 20) {
            return bad("journal_bytes_max must be at least 64 MiB");
        }
        if self.memtable_bytes < (1 << 20) {
            return bad("memtable_bytes must be at least 1 MiB");
        }
        Ok(())
    }
}
