//! Between the broker's types and the wire's.

use cortex_storage::{DeliveryPolicy, Error as StoreError, Record, StreamId};

use crate::broker::push::{Pushed, SubError};
use crate::broker::reqrep::PartKind;
use crate::broker::BrokerError;
use crate::wire::{self, ErrorCode, Frame, Id};

pub(super) fn sid(id: Id) -> StreamId {
    StreamId {
        ms: id.ms,
        seq: id.seq,
    }
}

pub(super) fn wid(id: StreamId) -> Id {
    Id {
        ms: id.ms,
        seq: id.seq,
    }
}

pub(super) fn delivery(stream: &[u8], p: Pushed) -> wire::Delivery {
    let Record { fields, meta, .. } = p.record;
    wire::Delivery {
        stream: stream.to_vec(),
        id: wid(p.id),
        fields,
        lane: meta.lane as u8,
        attempt: p.attempt,
        headers: meta.headers,
        producer: meta.producer,
    }
}

pub(super) fn entry(e: cortex_storage::Entry) -> wire::Entry {
    let Record { fields, meta, .. } = e.record;
    wire::Entry {
        id: wid(e.id),
        fields,
        lane: meta.lane as u8,
        headers: meta.headers,
        producer: meta.producer,
        expires_at_ms: meta.expires_at_ms,
    }
}

pub(super) fn policy(p: DeliveryPolicy) -> wire::Policy {
    wire::Policy {
        ack_wait_ms: p.ack_wait_ms,
        max_attempts: p.max_attempts,
        backoff_ms: p.backoff_ms,
        max_age_ms: p.max_age_ms,
        dead_letter: p.dead_letter,
    }
}

pub(super) fn dead_letter(
    (e, d): (cortex_storage::Entry, cortex_storage::DeadLetter),
) -> wire::DeadLetter {
    wire::DeadLetter {
        id: wid(e.id),
        fields: e.record.original_fields().to_vec(),
        origin: d.origin_stream,
        origin_id: wid(d.origin_id),
        group: d.group,
        consumer: d.consumer,
        reason: d.reason.name().to_string(),
        failures: d.failures,
        last_error: d.last_error,
        dead_at_ms: d.dead_at_ms,
    }
}

pub(super) fn part_kind(k: wire::PartKind) -> PartKind {
    match k {
        wire::PartKind::Progress => PartKind::Progress,
        wire::PartKind::Final => PartKind::Final,
        wire::PartKind::Error => PartKind::Error,
        wire::PartKind::InputRequired => PartKind::InputRequired,
    }
}

pub(super) fn wire_part_kind(k: PartKind) -> wire::PartKind {
    match k {
        PartKind::Progress => wire::PartKind::Progress,
        PartKind::Final => wire::PartKind::Final,
        PartKind::Error => wire::PartKind::Error,
        PartKind::InputRequired => wire::PartKind::InputRequired,
    }
}

pub(super) fn internal(msg: &str) -> Frame {
    Frame::Error {
        code: ErrorCode::Internal,
        message: format!("internal error: {msg}"),
    }
}

pub(super) fn store_error(e: &StoreError) -> Frame {
    Frame::Error {
        code: store_code(e),
        message: e.to_string(),
    }
}

/// The code a storage error is answered with.
pub(super) fn store_code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::NoSuchStream { .. }
        | StoreError::NoSuchGroup { .. }
        | StoreError::NoSuchTask { .. } => ErrorCode::NotFound,
        StoreError::GroupExists { .. }
        | StoreError::TargetExists
        | StoreError::TaskExists { .. }
        | StoreError::TaskFinished { .. } => ErrorCode::Conflict,
        StoreError::TooLarge { .. } => ErrorCode::TooLarge,
        StoreError::Corruption { .. } | StoreError::Storage(_) | StoreError::Unreadable(_) => {
            ErrorCode::Internal
        }
        _ => ErrorCode::InvalidArgument,
    }
}

pub(super) fn broker_error(e: &BrokerError) -> Frame {
    let code = match e {
        BrokerError::ShuttingDown => ErrorCode::ShuttingDown,
        BrokerError::Busy | BrokerError::Unavailable(_) => ErrorCode::Busy,
        BrokerError::NoPermission(_) => ErrorCode::NoPermission,
        BrokerError::DiskFull(_) => ErrorCode::InsufficientStorage,
        BrokerError::Storage(_) | BrokerError::Internal(_) => ErrorCode::Internal,
    };
    Frame::Error {
        code,
        message: e.to_string(),
    }
}

pub(super) fn sub_error(e: &SubError) -> Frame {
    match e {
        SubError::Broker(b) => broker_error(b),
        SubError::Store(s) => store_error(s),
    }
}

/// A task as the protocol carries it.
pub(super) fn task_info(t: cortex_storage::TaskRecord) -> wire::TaskInfo {
    let (group, consumer) = match t.holder {
        Some((g, c)) => (Some(g), Some(c)),
        None => (None, None),
    };
    wire::TaskInfo {
        task: t.task,
        state: t.state.name().into(),
        stream: t.stream,
        id: wid(t.id),
        submitter: t.submitter,
        group,
        consumer,
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
        finished_ms: t.finished_ms,
        changes: t.changes,
        history: t
            .history
            .into_iter()
            .map(|c| {
                let (event, detail) = crate::broker::task::event_text(&c.event);
                wire::TaskChange {
                    seq: c.seq,
                    at_ms: c.at_ms,
                    state: c.state.name().into(),
                    event: event.into(),
                    detail,
                    late: c.late,
                }
            })
            .collect(),
    }
}

/// An agent on this node, as the wire shows it.
pub(super) fn agent_info(a: crate::broker::presence::AgentView) -> wire::AgentInfo {
    wire::AgentInfo {
        agent: a.agent,
        last_heard_ms: a.last_heard_ms,
        sessions: a
            .sessions
            .into_iter()
            .map(|s| wire::SessionInfo {
                front: s.front,
                client: s.client,
                connected_ms: s.connected_ms,
                last_heard_ms: s.last_heard_ms,
                serves: s.serves,
                node: s.node,
            })
            .collect(),
    }
}

/// A task call's failure.
pub(super) fn task_error(e: &crate::broker::task::TaskError) -> Frame {
    match e {
        crate::broker::task::TaskError::Broker(e) => broker_error(e),
        crate::broker::task::TaskError::Store(e) => store_error(e),
    }
}
