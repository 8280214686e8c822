"""A Go agent and a Python agent on one broker: each publishes to the other and consumes
with push, in-progress, nack and ack; each asks the other a question over request/reply.
The Go half is clients/go/examples/interop, built and run here."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import cortex_bus as cortex

GO = Path(__file__).resolve().parents[2] / "go"


def test_go_and_python_agents_talk(broker, tmp_path):
    exe = tmp_path / "interop"
    subprocess.run(["go", "build", "-o", str(exe), "./examples/interop"], cwd=GO, check=True)

    async def main():
        async with cortex.connect(broker.quic, agent="py", data_dir=broker.data) as c:

            async def handler(r: cortex.IncomingRequest):
                return {"a": f"py says: {r.fields['q']}"}

            server = asyncio.create_task(c.serve("py", handler))
            sub = await c.subscribe("interop:to-py", start=cortex.Start.ALL)
            await c.publish("interop:to-go", {"hello": "from python"})
            go = await asyncio.create_subprocess_exec(
                str(exe),
                "-server",
                broker.quic,
                "-data-dir",
                broker.data,
                "-peer",
                "py",
                stdout=asyncio.subprocess.PIPE,
            )
            d = await asyncio.wait_for(sub.next(), 30)
            assert d.fields == {"hello": "from go"} and d.producer == "go"
            await d.in_progress()
            await d.ack()
            # Go serves once it has started: until then there are no responders.
            for _ in range(1500):
                try:
                    answer = await c.request("go", {"q": "pong"}, timeout=10)
                    break
                except cortex.NoResponders:
                    await asyncio.sleep(0.02)
            assert answer.fields == {"a": "go says: pong"} and answer.sender == "go"
            await c.publish("interop:done", {"py": "asked"})
            out, _ = await asyncio.wait_for(go.communicate(), 30)
            assert go.returncode == 0, out.decode()
            text = out.decode()
            assert "go: asked py" in text and "acked attempt 2" in text and "go: done" in text
            server.cancel()

    asyncio.run(asyncio.wait_for(main(), 90))
