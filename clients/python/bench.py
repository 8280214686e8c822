"""Measures the Python client against a running broker, as `cortex bench` measures the Rust
one: durable publish acks (one publisher, one message per call) or request/reply round
trips (the same agent serves its own inbox on a second connection). Prints one JSON line:
count, rate and latency p50/p99/p99.9 in microseconds. benches/clients.sh runs it beside
the Rust and Go clients against one broker."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import cortex_bus as cortex


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="127.0.0.1:7400")
    ap.add_argument("--data-dir", default="./cortex-data")
    ap.add_argument("--workload", choices=["publish", "reqrep"], default="publish")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--size", type=int, default=100)
    a = ap.parse_args()
    agent = "bench-py"
    body = {"body": "x" * a.size}
    async with cortex.connect(a.server, agent=agent, data_dir=a.data_dir) as c:
        server = None
        if a.workload == "publish":
            stream = f"bench:py:{time.time_ns()}"

            async def op():
                await c.publish(stream, body)
        else:
            responder = await cortex.connect(a.server, agent=agent, data_dir=a.data_dir)

            async def echo(r: cortex.IncomingRequest):
                return r.raw_fields

            server = asyncio.create_task(responder.serve(agent, echo, concurrency=64))

            async def op():
                await c.request(agent, body, timeout=10)

            deadline = time.monotonic() + 10
            while True:
                try:
                    await op()
                    break
                except cortex.NoResponders:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.02)
        lat = []
        started = time.perf_counter()
        until = started + a.duration
        while (t := time.perf_counter()) < until:
            await op()
            lat.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - started
        if server is not None:
            server.cancel()
            await responder.close()
    lat.sort()

    def q(p: float) -> int:
        return int(lat[min(len(lat) - 1, int(p * len(lat)))] * 1e6)

    out = {"client": "python", "workload": a.workload, "count": len(lat)}
    out |= {"rate": len(lat) / elapsed, "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999)}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
