"""Cortex Bus for Python agents: publish, push subscriptions with acks under a credit
window, request/reply and serving requests, over QUIC, with asyncio.

    import cortex_bus as cortex

    async with cortex.connect("127.0.0.1:7400", agent="pink") as c:
        await c.publish("tasks", {"task": "review"})
        async for d in c.subscribe("tasks", group="workers"):
            ...
            await d.ack()

The connection, reconnects (jittered backoff, across a cluster's nodes), resubscription,
stateless resets, keep-alive and certificate pinning are the Rust client's, through the
native module; this module gives them Python's types and exceptions.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import datetime
import enum
import inspect
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, Self, TypeVar

from . import _native

# Before the interpreter finalizes, stop native threads from handing it results (a
# subscription still waiting when a script ends would otherwise abort the process).
atexit.register(_native.quiesce)

__all__ = [
    "Agent",
    "AuthFailed",
    "BadFrame",
    "Busy",
    "Canceled",
    "Client",
    "Conflict",
    "ConnectError",
    "ConnectionLost",
    "CortexError",
    "DeadLetter",
    "Delivery",
    "Entry",
    "IncomingRequest",
    "Insufficient",
    "Internal",
    "InvalidArgument",
    "Lane",
    "Message",
    "NoPermission",
    "NoResponders",
    "NotFound",
    "Part",
    "PartKind",
    "ProtocolError",
    "Published",
    "ReplyFailed",
    "ServerError",
    "Session",
    "ShuttingDown",
    "Start",
    "Subscription",
    "Task",
    "TaskChange",
    "Timeout",
    "TooLarge",
    "connect",
]

T = TypeVar("T")
Bytesish = str | bytes
Pairs = list[tuple[bytes, bytes]]
FieldsLike = Mapping[str, Bytesish] | Mapping[bytes, Bytesish] | Iterable[tuple[Bytesish, Bytesish]]

INBOX_PREFIX = "cortex:inbox:"
RESPONDERS_GROUP = "cortex-responders"
HEADER_CORRELATION = "cortex-correlation-id"
HEADER_TASK = "cortex-task-id"
FINAL_STATES = frozenset({"completed", "failed", "canceled", "rejected"})


# ---- errors -------------------------------------------------------------------------------


class CortexError(Exception):
    """Every error this package raises."""


class ConnectError(CortexError):
    """No connection could be made (or none within the connect timeout)."""


class ConnectionLost(CortexError):
    """The connection dropped while the call was in flight: its outcome is unknown."""


class ProtocolError(CortexError):
    """The server sent something this client does not understand."""


class ServerError(CortexError):
    """The server refused the call; `code` names its error code."""

    code = "Internal"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class BadFrame(ServerError):
    code = "BadFrame"


class AuthFailed(ServerError):
    code = "AuthFailed"


class NoPermission(ServerError):
    code = "NoPermission"


class InvalidArgument(ServerError):
    code = "InvalidArgument"


class NotFound(ServerError):
    code = "NotFound"


class TooLarge(ServerError):
    code = "TooLarge"


class Busy(ServerError):
    code = "Busy"


class ShuttingDown(ServerError):
    code = "ShuttingDown"


class NoResponders(ServerError):
    code = "NoResponders"


class Timeout(ServerError):
    code = "Timeout"


class Conflict(ServerError):
    code = "Conflict"


class Internal(ServerError):
    code = "Internal"


class Insufficient(ServerError):
    """The broker's disk is under its free-space watermark; retry later."""

    code = "InsufficientStorage"


class ReplyFailed(CortexError):
    """The responder answered with an error part; `fields` holds it."""

    def __init__(self, sender: str | None, fields: dict[str, str]):
        super().__init__(f"{sender or 'the responder'} answered with an error: {fields}")
        self.sender = sender
        self.fields = fields


_BY_CODE: dict[str, type[ServerError]] = {
    cls.code: cls
    for cls in (
        BadFrame,
        AuthFailed,
        NoPermission,
        InvalidArgument,
        NotFound,
        TooLarge,
        Busy,
        ShuttingDown,
        NoResponders,
        Timeout,
        Conflict,
        Internal,
        Insufficient,
    )
}


def _server_error(code: str, message: str) -> ServerError:
    return _BY_CODE.get(code, ServerError)(message, code)


def _translate(e: _native.NativeError) -> CortexError:
    kind, code, message = e.args
    if kind == "server":
        return _server_error(code, message)
    if kind == "connect":
        return ConnectError(message)
    if kind == "lost":
        return ConnectionLost(message)
    if kind == "protocol":
        return ProtocolError(message)
    return CortexError(message)


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except _native.NativeError as e:
        raise _translate(e) from None


def _call_sync(f: Callable[..., T], *args: Any) -> T:
    """A native call that fails before it returns its awaitable (bad arguments)."""
    try:
        return f(*args)
    except _native.NativeError as e:
        raise _translate(e) from None


# ---- values -------------------------------------------------------------------------------


def _b(v: Bytesish) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


HEADER_DELIVER_AT = b"cortex-deliver-at-ms"
"""Header of a scheduled message: groups receive it from this Unix ms on."""
HEADER_DELAY = b"cortex-delay-ms"
"""Header of a scheduled message: groups receive it this many ms after it is stored."""


def _pairs(f: FieldsLike | None) -> list[tuple[bytes, bytes]]:
    if f is None:
        return []
    items = f.items() if isinstance(f, Mapping) else f
    return [(_b(k), _b(v)) for k, v in items]


def _text(pairs: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


class Lane(enum.IntEnum):
    """Priority lanes: lower is delivered first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3
    HEARTBEAT = 4


class PartKind(enum.IntEnum):
    PROGRESS = 0
    FINAL = 1
    ERROR = 2
    INPUT_REQUIRED = 3
    """The responder needs more input; more parts follow."""


@dataclasses.dataclass(frozen=True, order=True)
class Id:
    """A stream entry ID: milliseconds and sequence (Redis's ms-seq)."""

    ms: int
    seq: int

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    @classmethod
    def parse(cls, s: str) -> Id:
        ms, _, seq = s.partition("-")
        return cls(int(ms), int(seq or 0))


def _schedule(
    delay: float | None, deliver_at: datetime.datetime | float | None
) -> list[tuple[bytes, bytes]]:
    """The header that schedules a message: after `delay` seconds, or at `deliver_at`."""
    if delay is not None and deliver_at is not None:
        raise ValueError("give delay or deliver_at, not both")
    if delay is not None:
        if delay < 0:
            raise ValueError("delay must not be negative")
        return [(HEADER_DELAY, str(int(delay * 1000)).encode())]
    if deliver_at is not None:
        secs = (
            deliver_at.timestamp()
            if isinstance(deliver_at, datetime.datetime)
            else float(deliver_at)
        )
        if secs < 0:
            raise ValueError("deliver_at must not be before 1970")
        return [(HEADER_DELIVER_AT, str(int(secs * 1000)).encode())]
    return []


@dataclasses.dataclass
class Message:
    """A message to publish."""

    fields: FieldsLike
    lane: Lane = Lane.NORMAL
    ttl: float | None = None
    """Time to live, seconds."""
    key: str | bytes | None = None
    """Idempotency key: a repeat returns the first ID, and makes retries safe."""
    headers: FieldsLike | None = None
    delay: float | None = None
    """Scheduled delivery: groups receive it this many seconds after it is stored."""
    deliver_at: datetime.datetime | float | None = None
    """Scheduled delivery: groups receive it from this time on (an aware datetime, or Unix
    seconds). Stored at once either way; a TTL counts from the delivery time."""

    def _native(self) -> tuple[Pairs, int, int | None, bytes | None, Pairs]:
        ttl_ms = None if self.ttl is None else max(1, int(self.ttl * 1000))
        key = None if self.key is None else _b(self.key)
        headers = _pairs(self.headers) + _schedule(self.delay, self.deliver_at)
        return (_pairs(self.fields), int(self.lane), ttl_ms, key, headers)


@dataclasses.dataclass(frozen=True)
class Published:
    id: Id
    duplicate: bool
    """True when the idempotency key matched an earlier publish."""


@dataclasses.dataclass(frozen=True)
class Entry:
    id: Id
    fields: dict[str, str]
    raw_fields: list[tuple[bytes, bytes]]
    lane: Lane
    headers: dict[str, str]
    producer: str | None
    expires_at_ms: int | None


@dataclasses.dataclass(frozen=True)
class Part:
    kind: PartKind
    sender: str | None
    fields: dict[str, str]
    raw_fields: list[tuple[bytes, bytes]]


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    id: Id
    origin_id: Id
    group: str
    reason: str
    failures: int
    last_error: str | None
    fields: dict[str, str]


@dataclasses.dataclass(frozen=True)
class TaskChange:
    """One change of a task: its position, time, the state after it, what happened
    (submitted, delivered, part, acked, retry, rejected, dead-lettered, canceled, removed,
    redriven, deadline) and whether it came after the task was already final (a reply
    after a cancel)."""

    seq: int
    at_ms: int
    state: str
    event: str
    detail: str
    late: bool


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: a durable message to an agent with A2A's states (submitted, working,
    input-required, completed, failed, canceled, rejected), moved by the worker's calls."""

    task: str
    state: str
    stream: str
    id: Id
    submitter: str | None
    group: str | None
    consumer: str | None
    created_ms: int
    updated_ms: int
    finished_ms: int | None
    changes: int
    """Changes ever made (history may have dropped middle ones past its bound)."""
    history: list[TaskChange]

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def _task(t: Any) -> Task:
    task, state, stream, (ms, seq), submitter, (group, consumer), times, changes, hist = t
    created, updated, finished = times

    def txt(b: bytes | None) -> str | None:
        return None if b is None else b.decode(errors="replace")

    return Task(
        task.decode(errors="replace"),
        state,
        stream.decode(errors="replace"),
        Id(ms, seq),
        txt(submitter),
        txt(group),
        txt(consumer),
        created,
        updated,
        finished,
        changes,
        [TaskChange(*c) for c in hist],
    )


@dataclasses.dataclass(frozen=True)
class Session:
    """One connection of an agent: its front, client library, when it connected and was
    last heard from (Unix ms), the (stream, group) of each open subscription, and the node
    it is connected to (its cluster ID; 0 on a single node)."""

    front: str
    client: str
    connected_ms: int
    last_heard_ms: int
    serves: list[tuple[str, str]]
    node: int


@dataclasses.dataclass(frozen=True)
class Agent:
    """An agent connected to the node, with its sessions."""

    agent: str
    last_heard_ms: int
    sessions: list[Session]


@dataclasses.dataclass(frozen=True)
class Canceled:
    """A task this consumer holds was canceled: stop working on it. It comes ahead of any
    delivery sent after the cancel; the entry is no longer pending (an ack is harmless, a
    reply is kept and marked late)."""

    task: str
    id: Id


class Start:
    """Where a subscription's group starts when the subscription creates it."""

    def __init__(self, kind: int, ms: int = 0, seq: int = 0):
        self._v = (kind, ms, seq)

    NEW: Start
    ALL: Start

    @classmethod
    def after(cls, id: Id) -> Start:
        return cls(2, id.ms, id.seq)

    @classmethod
    def at(cls, unix_seconds: float) -> Start:
        return cls(3, int(unix_seconds * 1000))


Start.NEW = Start(0)
Start.ALL = Start(1)


# ---- deliveries ---------------------------------------------------------------------------


class Delivery:
    """One pushed entry: ack, nack, reject or mark it in progress."""

    __slots__ = (
        "_d",
        "attempt",
        "fields",
        "headers",
        "id",
        "lane",
        "producer",
        "raw_fields",
        "stream",
    )

    def __init__(self, d: _native.Delivery):
        stream, ms, seq, fields, lane, attempt, headers, producer = d.parts()
        self._d = d
        self.stream: str = stream.decode(errors="replace")
        self.id = Id(ms, seq)
        self.raw_fields: list[tuple[bytes, bytes]] = fields
        self.fields: dict[str, str] = _text(fields)
        self.lane = Lane(lane)
        self.attempt: int = attempt
        """How many times the group handed it out (1 the first time)."""
        self.headers: dict[str, str] = _text(headers)
        self.producer: str | None = None if producer is None else producer.decode()

    def __repr__(self) -> str:
        return f"Delivery({self.stream} {self.id} {self.lane.name} attempt {self.attempt})"

    async def ack(self) -> bool:
        """Acknowledges it; False when it was no longer pending."""
        return bool(await _call(self._d.ack()))

    async def nack(self, error: str | BaseException = "") -> None:
        """Fails it: retried after the group's backoff, or dead-lettered after its last try."""
        await _call(self._d.nack(str(error), False))

    async def reject(self, error: str | BaseException = "") -> None:
        """Dead-letters it at once (reason `rejected`)."""
        await _call(self._d.nack(str(error), True))

    async def in_progress(self) -> None:
        """Still working on it: its ack deadline starts again."""
        await _call(self._d.in_progress())


class Subscription:
    """A push subscription; iterate it with `async for`. It resumes across reconnects."""

    def __init__(self, client: Client, opening: Awaitable[_native.Subscription]):
        self._client = client
        self._opening = opening
        self._sub: _native.Subscription | None = None

    async def _open(self) -> _native.Subscription:
        if self._sub is None:
            self._sub = await _call(self._opening)
        return self._sub

    def __await__(self) -> Generator[Any, None, Subscription]:
        async def opened() -> Subscription:
            await self._open()
            return self

        return opened().__await__()

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Delivery]:
        while True:
            d = await self.next()
            if d is None:
                return
            yield d

    async def next(self) -> Delivery | None:
        """The next delivery, or None once the subscription ended. Cancel signals are
        skipped: a worker of tasks reads `events()` or `next_event()` instead."""
        while True:
            e = await self.next_event()
            if not isinstance(e, Canceled):
                return e

    async def next_event(self) -> Delivery | Canceled | None:
        """The next delivery or cancel signal, or None once the subscription ended."""
        sub = await self._open()
        e = await _call(sub.next())
        if e is None:
            return None
        if isinstance(e, tuple):
            task, ms, seq = e
            return Canceled(task.decode(errors="replace"), Id(ms, seq))
        return Delivery(e)

    async def events(self) -> AsyncIterator[Delivery | Canceled]:
        """Deliveries and cancel signals, in the order the server sent them."""
        while True:
            e = await self.next_event()
            if e is None:
                return
            yield e

    async def close(self) -> None:
        """Ends the subscription: the server hands it nothing more; deliveries not
        acknowledged stay pending in the group (and come again)."""
        if self._sub is not None:
            await _call(self._sub.close())

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def set_window(self, window: int) -> None:
        """Changes the window (0 pauses delivery)."""
        if self._sub is None:
            raise RuntimeError("the subscription is not open yet: await it first")
        self._sub.set_window(window)


# ---- request/reply ------------------------------------------------------------------------


class IncomingRequest(Delivery):
    """A request delivered to this agent's inbox."""

    __slots__ = ("_client",)

    def __init__(self, d: _native.Delivery, client: Client):
        super().__init__(d)
        self._client = client

    @property
    def sender(self) -> str | None:
        """The requesting agent."""
        return self.producer

    @property
    def correlation(self) -> str:
        return self.headers.get(HEADER_CORRELATION, "")

    @property
    def task(self) -> str | None:
        """The task ID, when it was submitted as a task (`Client.submit_task`)."""
        return self.headers.get(HEADER_TASK)

    async def progress(self, fields: FieldsLike) -> None:
        """Sends a progress part, and extends the request's ack deadline."""
        await self._client._respond(self.correlation, PartKind.PROGRESS, fields)
        await self.in_progress()

    async def input_required(self, fields: FieldsLike) -> None:
        """Sends an input-required part (what the responder needs, in `fields`): its task is
        input-required until the next part. Extends the request's ack deadline."""
        await self._client._respond(self.correlation, PartKind.INPUT_REQUIRED, fields)
        await self.in_progress()


Handler = Callable[[IncomingRequest], Awaitable[FieldsLike] | FieldsLike]
"""Answers one request: a coroutine function, or a plain function, returning the final
part's fields."""


def _part(p: tuple[int, str | None, Pairs]) -> Part:
    kind, sender, fields = p
    return Part(PartKind(kind), sender, _text(fields), fields)


class Reply:
    """The parts of a reply as they arrive: `async for part in reply`."""

    def __init__(self, stream: _native.ReplyStream):
        self._s = stream

    def __aiter__(self) -> AsyncIterator[Part]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Part]:
        while True:
            p = await _call(self._s.next())
            if p is None:
                return
            yield _part(p)
            if p[0] in (PartKind.FINAL, PartKind.ERROR):
                return


# ---- the client ---------------------------------------------------------------------------


class Client:
    """A connection to a broker, re-established on loss. Share one per process."""

    def __init__(self, native: _native.Client):
        self._c = native

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def agent(self) -> str:
        return self._c.agent

    @property
    def connections(self) -> int:
        """Connections made so far (1 until the first reconnect; 0 while reconnecting)."""
        return self._c.connections

    async def close(self) -> None:
        """Closes the connection: the server lets go of this client's subscriptions now."""
        await self._c.close()

    async def publish(
        self,
        stream: str,
        fields: FieldsLike,
        *,
        lane: Lane = Lane.NORMAL,
        ttl: float | None = None,
        key: str | bytes | None = None,
        headers: FieldsLike | None = None,
        delay: float | None = None,
        deliver_at: datetime.datetime | float | None = None,
    ) -> Published:
        """Publishes one message; returns once it is durable. `delay` (seconds) or
        `deliver_at` schedule it: stored now, handed to groups from then on."""
        m = Message(fields, lane, ttl, key, headers, delay, deliver_at)
        (r,) = await self.publish_batch(stream, [m])
        if isinstance(r, CortexError):
            raise r
        return r

    async def publish_batch(
        self, stream: str, messages: Sequence[Message]
    ) -> list[Published | ServerError]:
        """Publishes messages in order, in one commit. Returns one result per message: its
        Published, or the ServerError that refused that message alone (TooLarge for an entry
        over 1 MiB) while the others were stored. Raises for a refusal of the whole batch.
        With idempotency keys on every message, a lost connection is retried safely."""
        msgs = [m._native() for m in messages]
        raw = await _call(self._c.publish_batch(_b(stream), msgs))
        return [
            Published(Id(ms, seq), dup) if ok else _server_error(code, message)
            for ok, ms, seq, dup, code, message in raw
        ]

    def subscribe(
        self,
        stream: str,
        *,
        group: str | None = None,
        consumer: str | None = None,
        start: Start = Start.NEW,
        window: int = 100,
        heartbeat: float | None = None,
        no_ack: bool = False,
    ) -> Subscription:
        """A push subscription: `async for d in c.subscribe(...)`, or `await` it first to
        know it is open. `group` defaults to the agent's name (a broadcast), `consumer` to
        the agent's name; at most `window` deliveries are in flight."""
        kind, ms, seq = start._v
        hb = 0 if heartbeat is None else max(1, int(heartbeat * 1000))
        opening = _call_sync(
            self._c.subscribe,
            _b(stream),
            None if group is None else _b(group),
            None if consumer is None else _b(consumer),
            kind,
            ms,
            seq,
            window,
            hb,
            no_ack,
        )
        return Subscription(self, opening)

    async def request_parts(
        self,
        agent: str,
        fields: FieldsLike,
        *,
        timeout: float = 30.0,
        lane: Lane = Lane.HIGH,
        headers: FieldsLike | None = None,
        task_id: str | None = None,
    ) -> Reply:
        """Sends a request; returns its parts as they stream back. Raises NoResponders at
        once when nobody serves `agent`. A request is a task: `task_id` names it (1 to 64
        bytes, unique while kept; also the correlation ID that lets a responder's parts in,
        so make it unguessable), and `task`, `watch_task` and `cancel_task` then reach it;
        without one the server names it."""
        hs = _pairs(headers)
        if task_id is not None:
            hs.append((b"cortex-task-id", task_id.encode()))
        s = await _call(
            self._c.request(agent, _pairs(fields), hs, int(lane), max(1, int(timeout * 1000)))
        )
        return Reply(s)

    async def request(
        self,
        agent: str,
        fields: FieldsLike,
        *,
        timeout: float = 30.0,
        lane: Lane = Lane.HIGH,
        headers: FieldsLike | None = None,
        task_id: str | None = None,
    ) -> Part:
        """Sends a request and returns its final part (progress parts are skipped). Raises
        ReplyFailed for the responder's error part, Timeout, or NoResponders. `task_id` as
        for `request_parts`."""
        reply = await self.request_parts(
            agent, fields, timeout=timeout, lane=lane, headers=headers, task_id=task_id
        )
        async for p in reply:
            if p.kind == PartKind.FINAL:
                return p
            if p.kind == PartKind.ERROR:
                raise ReplyFailed(p.sender, p.fields)
        raise ProtocolError("the reply ended without a final part")

    async def _respond(self, correlation: str, kind: PartKind, fields: FieldsLike) -> None:
        await _call(self._c.respond(correlation.encode(), int(kind), _pairs(fields)))

    async def serve(self, agent: str, handler: Handler, *, concurrency: int = 16) -> None:
        """Answers the requests sent to `agent` (its inbox, shared by every instance of it
        through the group cortex-responders; an agent may always serve its own,
        `c.agent`) with `handler`, until cancelled. The
        handler returns the final part's fields; an exception becomes an error part
        ({"error": text}; ReplyFailed's fields as they are). A request is acknowledged after
        its answer is stored, so one that a crash interrupts is delivered again.

        A canceled task's handler is cancelled (asyncio's CancelledError, raised where it
        awaits) the moment the cancel signal arrives, and nothing is answered for it."""
        sub = self.subscribe(INBOX_PREFIX + agent, group=RESPONDERS_GROUP, window=concurrency)
        await sub
        running: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                e = await sub.next_event()
                if e is None:
                    return
                if isinstance(e, Canceled):
                    t = running.get(e.task)
                    if t is not None:
                        t.cancel()
                    continue
                r = IncomingRequest(e._d, self)
                key = r.correlation or str(r.id)
                t = asyncio.create_task(self._answer(r, handler))
                running[key] = t

                def forget(_t: asyncio.Task[None], k: str = key) -> None:
                    running.pop(k, None)

                t.add_done_callback(forget)
        finally:
            for t in list(running.values()):
                t.cancel()
            # Closed now, not when collected: a later serve of the same agent must not lose
            # requests to this stream.
            await sub.close()

    async def _answer(self, r: IncomingRequest, handler: Handler) -> None:
        if not r.correlation:
            await r.reject("not a request: no correlation header")
            return
        try:
            out = handler(r)
            if inspect.isawaitable(out):
                out = await out
            kind, fields = PartKind.FINAL, _pairs(out) or [(b"ok", b"")]
        except asyncio.CancelledError:
            raise
        except ReplyFailed as e:
            kind, fields = PartKind.ERROR, _pairs(e.fields)
        except Exception as e:  # the requester gets any handler failure as an error part
            kind, fields = PartKind.ERROR, [(b"error", str(e).encode())]
        try:
            await self._respond(r.correlation, kind, fields)
        except NotFound:
            pass  # the request completed or timed out meanwhile: nobody waits for it
        except CortexError as e:
            await r.nack(e)
            return
        await r.ack()

    async def range(
        self,
        stream: str,
        start: Id = Id(0, 0),
        end: Id = Id(2**64 - 1, 2**64 - 1),
        *,
        count: int = 100,
        rev: bool = False,
    ) -> list[Entry]:
        """Entries with IDs in [start, end], oldest first (newest first with rev)."""
        raw = await _call(
            self._c.range(_b(stream), (start.ms, start.seq), (end.ms, end.seq), count, rev)
        )
        return [
            Entry(
                Id(ms, seq),
                _text(f),
                f,
                Lane(lane),
                _text(h),
                None if p is None else p.decode(),
                exp,
            )
            for ms, seq, f, lane, h, p, exp in raw
        ]

    async def stat(self, stream: str | None = None) -> list[dict[str, Any]]:
        """Streams the agent may consume, with their groups, pending counts and lag."""
        raw = await _call(self._c.stat(None if stream is None else _b(stream)))
        return [
            {
                "name": name.decode(),
                "length": length,
                "last_id": Id(*last),
                "lanes": lanes,
                "groups": [
                    {
                        "name": g.decode(),
                        "consumers": consumers,
                        "pending": pending,
                        "lag": lag,
                        "last_delivered": Id(*ld),
                        "policy": policy,
                    }
                    for g, consumers, pending, lag, ld, policy in groups
                ],
            }
            for name, length, last, lanes, groups in raw
        ]

    async def set_policy(
        self,
        stream: str,
        group: str,
        *,
        max_attempts: int | None = None,
        backoff: Sequence[float] | None = None,
    ) -> None:
        """Changes a group's retry policy (admin): attempts, backoff steps in seconds."""
        steps = None if backoff is None else [int(s * 1000) for s in backoff]
        await _call(self._c.set_policy(_b(stream), _b(group), max_attempts, steps))

    async def submit_task(
        self,
        agent: str,
        fields: FieldsLike,
        *,
        id: str | None = None,
        lane: Lane = Lane.NORMAL,
        deadline: float | None = None,
        headers: FieldsLike | None = None,
        delay: float | None = None,
        deliver_at: datetime.datetime | float | None = None,
        dead_letter_on_cancel: bool = False,
    ) -> Task:
        """Submits a task to `agent` (its inbox; its `serve` answers it as a request);
        returns it once durable. `id` defaults to 32 random hex digits; `deadline`
        (seconds, default one hour) bounds how long it may wait and run; `delay` or
        `deliver_at` schedule it; `dead_letter_on_cancel` keeps it in the dead-letter
        stream (reason "canceled") if it is canceled before a worker took it. Conflict for
        an ID in use."""
        dl = 0 if deadline is None else max(1, int(deadline * 1000))
        hs = _pairs(headers) + _schedule(delay, deliver_at)
        if dead_letter_on_cancel:
            hs.append((b"cortex-on-cancel", b"dlq"))
        raw = await _call(
            self._c.submit_task(
                agent, None if id is None else _b(id), _pairs(fields), hs, int(lane), dl
            )
        )
        return _task(raw)

    async def task(self, id: str) -> Task:
        """A task with its history; NotFound when unknown (or not visible to this agent)."""
        return _task(await _call(self._c.task(_b(id))))

    async def cancel_task(self, id: str) -> Task:
        """Cancels a task: never delivered if not yet taken, else its holder is signalled
        ahead of anything else. Returns it, canceled. NotFound for an unknown task,
        Conflict naming the state of a finished one."""
        return _task(await _call(self._c.cancel_task(_b(id))))

    async def watch_task(self, id: str, *, start: int = 0) -> AsyncIterator[TaskChange]:
        """Every change of a task from position `start` on, as it happens, until the task
        is final. A lost connection is resumed (the client reconnects) from one past the
        last change yielded: none is missed or repeated. After 30 failed attempts in a row
        the last failure is raised."""
        pos, failures = start, 0
        while True:
            try:
                t = _task(await _call(self._c.watch_task(_b(id), pos, 60_000)))
                failures = 0
            except (ConnectionLost, ConnectError):
                failures += 1
                if failures >= 30:
                    raise
                continue
            for c in t.history:
                yield c
                pos = c.seq + 1
            if t.final and pos >= t.changes:
                return

    async def tasks(
        self,
        *,
        agent: str | None = None,
        state: str | None = None,
        after: str = "",
        count: int = 100,
    ) -> list[Task]:
        """Tasks in ID order after `after`, addressed to `agent` and in `state` when given,
        at most `count`."""
        out: list[Task] = []
        cursor = _b(after)
        while len(out) < count:
            raw, nxt = await _call(self._c.tasks(agent, state, cursor, min(1000, count - len(out))))
            out.extend(_task(t) for t in raw)
            if nxt is None or (not raw and nxt == cursor):
                break
            cursor = nxt
        return out

    async def agents(self) -> list[Agent]:
        """The agents connected to the node this client talks to and, in a cluster, to every
        other node, by name (presence)."""
        raw = await _call(self._c.agents())
        return [
            Agent(
                name,
                heard,
                [
                    Session(
                        front,
                        client,
                        conn,
                        last,
                        [
                            (st.decode(errors="replace"), g.decode(errors="replace"))
                            for st, g in serves
                        ],
                        node,
                    )
                    for front, client, conn, last, serves, node in sessions
                ],
            )
            for name, heard, sessions in raw
        ]

    async def dead_letters(self, origin: str | None = None, count: int = 100) -> list[DeadLetter]:
        """Dead letters of the default DLQ, from one origin stream or all (admin)."""
        raw = await _call(self._c.dead_letters(None if origin is None else _b(origin), count))
        return [
            DeadLetter(
                Id(ms, seq),
                Id(oms, oseq),
                group.decode(),
                reason,
                failures,
                None if err is None else err.decode(errors="replace"),
                _text(fields),
            )
            for ms, seq, oms, oseq, group, reason, failures, err, fields in raw
        ]


class _Connecting:
    """What `connect` returns: await it for a Client, or use it as `async with`."""

    def __init__(self, opening: Callable[[], Awaitable[Client]]):
        self._opening = opening
        self._client: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return self._opening().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._opening()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    servers: str | Sequence[str] = "127.0.0.1:7400",
    *,
    agent: str,
    token: str = "",
    data_dir: str | os.PathLike[str] | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    fingerprint: str | None = None,
    server_name: str = "localhost",
    connect_timeout: float = 15.0,
) -> _Connecting:
    """Connects to the first server that answers (a cluster: its nodes, this host's first).

    Trust, one of: `fingerprint` (SHA-256 of the server's certificate, hex; a cluster's
    nodes comma-separated), `ca_file` (a CA's PEM; the name must match `server_name`), or
    the certificate `cortex serve` keeps in `data_dir` (default `./cortex-data`). There is
    no skipping verification.

    `async with cortex.connect(...) as c:` closes the client at the end; `c = await
    cortex.connect(...)` leaves closing to you."""
    if isinstance(servers, str):
        servers = [servers]
    if fingerprint is not None:
        kind, value = "fingerprint", fingerprint
    elif ca_file is not None:
        kind, value = "ca_file", os.fspath(ca_file)
    else:
        d = os.fspath(data_dir) if data_dir is not None else "./cortex-data"
        kind, value = "cert_file", os.path.join(d, "tls", "cert.pem")
    args = (list(servers), agent, token, kind, value, server_name, float(connect_timeout))

    async def opening() -> Client:
        native = await _call(_call_sync(_native.Client.connect, *args))
        return Client(native)

    return _Connecting(opening)
