# Type stubs of the native module (PyO3 over the Rust client). Use `cortex_bus` instead.

from collections.abc import Awaitable
from typing import TypeAlias

Pairs: TypeAlias = list[tuple[bytes, bytes]]
# (seq, at_ms, state, event, detail, late)
Change: TypeAlias = tuple[int, int, str, str, str, bool]
# (task, state, stream, (ms, seq), submitter, (group, consumer),
#  (created_ms, updated_ms, finished_ms), changes, history)
Task: TypeAlias = tuple[
    bytes,
    str,
    bytes,
    tuple[int, int],
    bytes | None,
    tuple[bytes | None, bytes | None],
    tuple[int, int, int | None],
    int,
    list[Change],
]

# args: (kind, code, message); kind is server, connect, lost, protocol or config.
class NativeError(Exception): ...

class Client:
    @staticmethod
    def connect(
        servers: list[str],
        agent: str,
        token: str,
        trust_kind: str,
        trust_value: str,
        server_name: str,
        connect_timeout: float,
    ) -> Awaitable[Client]: ...
    @property
    def agent(self) -> str: ...
    @property
    def connections(self) -> int: ...
    def close(self) -> Awaitable[None]: ...
    def publish_batch(
        self,
        stream: bytes,
        messages: list[tuple[Pairs, int, int | None, bytes | None, Pairs]],
    ) -> Awaitable[list[tuple[bool, int, int, bool, str, str]]]: ...
    def subscribe(
        self,
        stream: bytes,
        group: bytes | None,
        consumer: bytes | None,
        start_kind: int,
        start_ms: int,
        start_seq: int,
        window: int,
        heartbeat_ms: int,
        no_ack: bool,
    ) -> Awaitable[Subscription]: ...
    def request(
        self, agent: str, fields: Pairs, headers: Pairs, lane: int, timeout_ms: int
    ) -> Awaitable[ReplyStream]: ...
    def respond(self, correlation: bytes, kind: int, fields: Pairs) -> Awaitable[None]: ...
    def range(
        self, stream: bytes, start: tuple[int, int], end: tuple[int, int], count: int, rev: bool
    ) -> Awaitable[list[tuple[int, int, Pairs, int, Pairs, bytes | None, int | None]]]: ...
    def stat(
        self, stream: bytes | None
    ) -> Awaitable[
        list[
            tuple[
                bytes,
                int,
                tuple[int, int],
                list[int],
                list[tuple[bytes, int, int, int | None, tuple[int, int], bool]],
            ]
        ]
    ]: ...
    def set_policy(
        self, stream: bytes, group: bytes, max_attempts: int | None, backoff_ms: list[int] | None
    ) -> Awaitable[None]: ...
    def submit_task(
        self,
        agent: str,
        task: bytes | None,
        fields: Pairs,
        headers: Pairs,
        lane: int,
        deadline_ms: int,
    ) -> Awaitable[Task]: ...
    def task(self, task: bytes) -> Awaitable[Task]: ...
    def cancel_task(self, task: bytes) -> Awaitable[Task]: ...
    def watch_task(self, task: bytes, start: int, wait_ms: int) -> Awaitable[Task]: ...
    def tasks(
        self, agent: str | None, state: str | None, after: bytes, count: int
    ) -> Awaitable[tuple[list[Task], bytes | None]]: ...
    def agents(
        self,
    ) -> Awaitable[
        list[tuple[str, int, list[tuple[str, str, int, int, list[tuple[bytes, bytes]], int]]]]
    ]: ...
    def dead_letters(
        self, origin: bytes | None, count: int
    ) -> Awaitable[list[tuple[int, int, int, int, bytes, str, int, bytes | None, Pairs]]]: ...

class Subscription:
    def next(self) -> Awaitable[Delivery | tuple[bytes, int, int] | None]: ...
    def set_window(self, window: int) -> None: ...
    def close(self) -> Awaitable[None]: ...

class Delivery:
    def parts(self) -> tuple[bytes, int, int, Pairs, int, int, Pairs, bytes | None]: ...
    def ack(self) -> Awaitable[int]: ...
    def nack(self, error: str, reject: bool) -> Awaitable[int]: ...
    def in_progress(self) -> Awaitable[int]: ...

class ReplyStream:
    def next(self) -> Awaitable[tuple[int, str | None, Pairs] | None]: ...

def reencode_frame(bytes: bytes) -> tuple[str, bytes]: ...
def quiesce() -> None: ...
