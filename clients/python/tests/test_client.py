"""cortex_bus against the real broker: publish (a result per message), push subscriptions
with ack, nack, reject and in-progress, request/reply and serve, typed errors, the golden
vectors, and a broker killed and restarted under a live subscription."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import cortex_bus as cortex
import pytest
from cortex_bus import _native

ROOT = Path(__file__).resolve().parents[3]
BOUND = 30.0
INBOX = "cortex:inbox:"  # the most one step waits for the broker


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, BOUND * 2))


def fresh(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


def test_golden_vectors_cross_unchanged():
    files = sorted((ROOT / "protocol" / "golden").glob("*.txt"))
    assert len(files) >= 22
    tags = set()
    for path in files:
        kv = dict(line.split(": ", 1) for line in path.read_text().strip().splitlines())
        raw = bytes.fromhex(kv["hex"])
        tag, name = kv["frame"].split(" ")
        got_name, again = _native.reencode_frame(raw)
        assert got_name == name, path.name
        assert again == raw, path.name
        tags.add(int(tag))
    assert tags == set(range(23))
    with pytest.raises(_native.NativeError):
        _native.reencode_frame(b"\x04\x00\x00\x00\xee\x00\x00\x00")


def test_publish_batch_answers_every_message(broker):
    async def main():
        async with cortex.connect(broker.quic, agent="harold", data_dir=broker.data) as c:
            stream = fresh("mixed")
            results = await c.publish_batch(
                stream,
                [
                    cortex.Message({"n": "1"}),
                    cortex.Message({"body": "x" * ((1 << 20) + 10)}),
                    cortex.Message({"n": "3"}),
                    cortex.Message({"n": "4"}, lane=cortex.Lane.HIGH, ttl=60, headers={"h": "v"}),
                ],
            )
            assert isinstance(results[1], cortex.TooLarge), results[1]
            stored = [r.id for r in results if isinstance(r, cortex.Published)]
            assert len(stored) == 3
            entries = await c.range(stream)
            assert [e.id for e in entries] == stored
            assert [e.fields.get("n") for e in entries] == ["1", "3", "4"]
            assert entries[2].lane == cortex.Lane.HIGH and entries[2].headers == {"h": "v"}
            assert entries[2].expires_at_ms is not None and entries[0].producer == "harold"
            first = await c.publish(stream, {"n": "5"}, key="k1")
            again = await c.publish(stream, {"n": "5"}, key="k1")
            assert again.duplicate and again.id == first.id and not first.duplicate
            with pytest.raises(cortex.InvalidArgument):
                await c.publish("", {"a": "b"})

    run(main())


def test_subscribe_ack_nack_reject_in_progress(broker):
    async def main():
        async with cortex.connect(broker.quic, agent="pink", data_dir=broker.data) as c:
            stream = fresh("work")
            await c.publish_batch(stream, [cortex.Message({"job": j}) for j in "abc"])
            sub = await c.subscribe(stream, group="workers", start=cortex.Start.ALL, window=8)
            await c.set_policy(stream, "workers", max_attempts=2, backoff=[0])
            a = await sub.next()
            assert a.fields == {"job": "a"} and a.attempt == 1 and a.producer == "pink"
            await a.in_progress()
            assert await a.ack() is True
            b = await sub.next()
            await b.nack(RuntimeError("tests failed"))
            cd = await sub.next()
            await cd.reject("not for me")
            again = await sub.next()
            assert again.id == b.id and again.attempt == 2
            await again.ack()
            dead = await c.dead_letters(stream)
            assert [(d.origin_id, d.reason, d.last_error) for d in dead] == [
                (cd.id, "rejected", "not for me")
            ]
            (s,) = await c.stat(stream)
            assert s["groups"][0]["pending"] == 0 and s["length"] == 3
            # Acking again what is no longer pending answers False.
            assert await a.ack() is False
            # Closing ends the subscription, and a next() waiting then returns None.
            waiting = asyncio.create_task(sub.next())
            await sub.close()
            assert await asyncio.wait_for(waiting, BOUND) is None
            assert await sub.next() is None

    run(main())


def test_a_delayed_message_comes_at_its_time(broker):
    """Stored at once (the range shows its time), pushed once its time has come and never
    before; which of the two comes first is the scheduler's to decide on a loaded machine
    (a subscription slowed past the delay is handed both at once, in ID order)."""

    async def main():
        async with cortex.connect(broker.quic, agent="pink", data_dir=broker.data) as c:
            stream = fresh("later")
            sub = await c.subscribe(stream, group="w", start=cortex.Start.ALL)
            later = await c.publish(stream, {"job": "later"}, delay=0.3)
            now = await c.publish(stream, {"job": "now"})
            stored = await c.range(stream)
            assert len(stored) == 2 and "cortex-deliver-at-ms" in stored[0].headers
            due = int(stored[0].headers["cortex-deliver-at-ms"])
            first = await sub.next()
            first_at = time.time() * 1000
            second = await sub.next()
            second_at = time.time() * 1000
            got = {first.id: first_at, second.id: second_at}
            assert set(got) == {now.id, later.id}
            assert got[later.id] >= due, "the delayed message came before its time"
            assert first.attempt == second.attempt == 1
            await first.ack()
            await second.ack()
            with pytest.raises(ValueError):
                await c.publish(stream, {"job": "x"}, delay=1, deliver_at=0)
            with pytest.raises(cortex.InvalidArgument):
                await c.publish(stream, {"job": "x"}, delay=10**9)
            await sub.close()

    run(main())


def test_request_reply_and_serve(broker):
    async def main():
        pink_name = fresh("pink")
        async with (
            cortex.connect(broker.quic, agent="harold", data_dir=broker.data) as harold,
            cortex.connect(broker.quic, agent=pink_name, data_dir=broker.data) as pink,
        ):

            async def handler(r: cortex.IncomingRequest):
                q = r.fields["q"]
                if q == "fail":
                    raise ValueError("cannot")
                if q == "slow":
                    await r.progress({"pct": "50"})
                    await r.input_required({"need": "branch"})
                if q == "never":
                    await asyncio.sleep(3600)
                return {"a": f"re: {q}", "from": r.sender}

            server = asyncio.create_task(pink.serve(pink_name, handler))
            # Until serve's subscription is up there are no responders.
            deadline = time.monotonic() + BOUND
            while True:
                try:
                    answer = await harold.request(pink_name, {"q": "help?"})
                    break
                except cortex.NoResponders:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
            assert answer.fields == {"a": "re: help?", "from": "harold"}
            assert answer.sender == pink_name

            # A request is a task: named here, its state follows the parts.
            req_task = fresh("req")
            reply = await harold.request_parts(pink_name, {"q": "slow"}, task_id=req_task)
            parts = [p async for p in reply]
            assert [p.kind for p in parts] == [
                cortex.PartKind.PROGRESS,
                cortex.PartKind.INPUT_REQUIRED,
                cortex.PartKind.FINAL,
            ]
            assert parts[0].fields == {"pct": "50"}
            task = await harold.task(req_task)
            assert task.state == "completed"
            assert [c.state for c in task.history] == [
                "submitted",
                "working",
                "working",
                "input-required",
                "completed",
            ]

            with pytest.raises(cortex.ReplyFailed) as failed:
                await harold.request(pink_name, {"q": "fail"})
            assert failed.value.fields == {"error": "cannot"}
            with pytest.raises(cortex.Timeout):
                await harold.request(pink_name, {"q": "never"}, timeout=0.3)
            with pytest.raises(cortex.NoResponders):
                await harold.request(fresh("nobody"), {"q": "?"})
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server

            # A plain function serves as well as a coroutine function.
            plain = asyncio.create_task(pink.serve(pink_name, lambda r: {"echo": r.fields["q"]}))
            deadline = time.monotonic() + BOUND
            while True:
                try:
                    answer = await harold.request(pink_name, {"q": "sync?"})
                    break
                except cortex.NoResponders:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
            assert answer.fields == {"echo": "sync?"}
            plain.cancel()

    run(main())


def test_task_cancel_overtakes_the_next_task_and_serve_cancels_the_handler(broker):
    """The seed's race: T1 submitted and taken, then "cancel T1, do T2 instead". pink's
    handler for T1 is cancelled before T2 starts; T1 ends canceled, T2 completed."""

    async def main():
        pink_name = fresh("pink")
        t1, t2 = fresh("T1"), fresh("T2")
        log: list[str] = []
        t1_started = asyncio.Event()
        async with (
            cortex.connect(broker.quic, agent="harold", data_dir=broker.data) as harold,
            cortex.connect(broker.quic, agent=pink_name, data_dir=broker.data) as pink,
        ):

            async def handler(r: cortex.IncomingRequest):
                log.append(f"start {r.task}")
                if r.task == t1:
                    t1_started.set()
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        log.append(f"cancelled {r.task}")
                        raise
                return {"done": r.fields["do"]}

            # Durable before anyone serves pink.
            first = await harold.submit_task(pink_name, {"do": "refactor"}, id=t1)
            assert first.state == "submitted" and first.submitter == "harold"
            server = asyncio.create_task(pink.serve(pink_name, handler))
            await asyncio.wait_for(t1_started.wait(), BOUND)
            canceled = await harold.cancel_task(t1)
            assert canceled.state == "canceled" and canceled.final
            await harold.submit_task(pink_name, {"do": "tests"}, id=t2)
            changes = [c async for c in harold.watch_task(t2)]
            assert [c.state for c in changes] == ["submitted", "working", "completed"]
            assert [c.seq for c in changes] == [0, 1, 2]
            assert log == [f"start {t1}", f"cancelled {t1}", f"start {t2}"]
            # Resuming from a position yields only what follows it.
            assert [c.seq async for c in harold.watch_task(t2, start=2)] == [2]
            assert (await harold.task(t1)).history[-1].state == "canceled"
            with pytest.raises(cortex.Conflict):
                await harold.cancel_task(t2)
            with pytest.raises(cortex.NotFound):
                await harold.cancel_task(fresh("nothing"))
            with pytest.raises(cortex.Conflict):
                await harold.submit_task(pink_name, {"do": "again"}, id=t2)
            # One that asks for it goes to the DLQ when canceled before a worker took it.
            t3 = fresh("T3")
            later = await harold.submit_task(
                pink_name, {"do": "later"}, id=t3, delay=3600, dead_letter_on_cancel=True
            )
            await harold.cancel_task(t3)
            dead = await harold.dead_letters(INBOX + pink_name)
            assert [d.reason for d in dead if d.origin_id == later.id] == ["canceled"]
            gone = await harold.tasks(agent=pink_name, state="canceled")
            assert sorted(t.task for t in gone) == sorted([t1, t3])
            # Presence: pink is connected over QUIC, serving its inbox.
            (me,) = [a for a in await harold.agents() if a.agent == pink_name]
            assert me.sessions[0].front == "quic"
            assert (INBOX + pink_name, "cortex-responders") in me.sessions[0].serves
            server.cancel()
            with pytest.raises(asyncio.CancelledError):
                await server

    run(main())


def test_trust_is_never_skipped(broker):
    async def main():
        with pytest.raises(cortex.ConnectError):
            await cortex.connect(broker.quic, agent="x", fingerprint="ab" * 32, connect_timeout=3)
        with pytest.raises(cortex.CortexError):
            await cortex.connect(broker.quic, agent="x", data_dir="/nonexistent")

    run(main())


def test_survives_a_broker_restart(own_broker):
    b = own_broker

    async def main():
        async with cortex.connect(b.quic, agent="pink", data_dir=b.data) as c:
            n = 10
            await c.publish_batch(
                "jobs", [cortex.Message({"n": str(i)}, key=f"k{i}") for i in range(n)]
            )
            sub = await c.subscribe(
                "jobs", group="g", start=cortex.Start.ALL, window=4, heartbeat=0.5
            )
            acked = set()
            for _ in range(3):
                d = await sub.next()
                await d.ack()
                acked.add(d.id)
            held = await sub.next()  # handed out, never acked: must come back

            b.kill()
            b.start()

            # Publish during the reconnect: the key makes the retry safe.
            await c.publish("jobs", {"n": "after"}, key="k-after")
            seen = set()
            while len(seen) < n - len(acked) + 1:
                d = await asyncio.wait_for(sub.next(), BOUND)
                assert d.id not in acked, f"{d.id} was acked before the crash"
                seen.add(d.id)
                await d.ack()
            assert held.id in seen
            assert c.connections >= 2
            (s,) = await c.stat("jobs")
            assert s["length"] == n + 1 and s["groups"][0]["pending"] == 0

    run(main())


# Ends as a short script does: a request served and answered, then the serving task
# cancelled and the clients closed, with the process exiting at once.
EXIT_SCRIPT = """
import asyncio, sys
import cortex_bus as cortex

async def main():
    async with cortex.connect(sys.argv[1], agent=sys.argv[3], data_dir=sys.argv[2]) as c:
        responder = await cortex.connect(sys.argv[1], agent=sys.argv[3], data_dir=sys.argv[2])

        async def echo(r):
            return r.raw_fields

        server = asyncio.create_task(responder.serve(sys.argv[3], echo))
        while True:
            try:
                await c.request(sys.argv[3], {"q": "x"}, timeout=10)
                break
            except cortex.NoResponders:
                await asyncio.sleep(0.01)
        for _ in range(20):
            await c.request(sys.argv[3], {"q": "x"}, timeout=10)
        sub = await c.subscribe("leaver-" + sys.argv[3], start=cortex.Start.ALL)
        asyncio.create_task(sub.next())  # still waiting when the script ends
        server.cancel()
        await responder.close()

asyncio.run(main())
"""


def test_a_script_that_ends_with_calls_in_flight_exits_cleanly(broker, tmp_path):
    script = tmp_path / "leave.py"
    script.write_text(EXIT_SCRIPT)
    for i in range(10):
        p = subprocess.run(
            [sys.executable, str(script), broker.quic, broker.data, fresh(f"leaver{i}")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert p.returncode == 0, p.stderr
