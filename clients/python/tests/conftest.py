"""Starts the real broker (CORTEX_BIN, or the workspace's target/debug/cortex) on loopback
ports for the tests, and kills it at the end (SIGKILL, also if pytest itself dies)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def cortex_bin() -> str:
    if os.environ.get("CORTEX_BIN"):
        return os.environ["CORTEX_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "debug" / "cortex")


class Broker:
    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="cortex-py-")
        self.data = self._dir.name
        self.quic = "127.0.0.1:0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Starts the binary; a restart keeps the QUIC address, so clients find it again."""
        self.proc = subprocess.Popen(
            # setpriv: the broker dies with pytest, even if pytest itself is killed.
            [
                "setpriv",
                "--pdeathsig",
                "KILL",
                cortex_bin(),
                "serve",
                "--data-dir",
                self.data,
                "--quic",
                self.quic,
                "--resp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("cortex: QUIC listening on "):
                    self.quic = line.split()[-1]
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(30):
            raise RuntimeError("cortex did not report its QUIC port within 30 s")

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed and no goodbye."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.kill()
        self._dir.cleanup()


@pytest.fixture(scope="session")
def broker():
    b = Broker()
    b.start()
    yield b
    b.close()


@pytest.fixture
def own_broker():
    b = Broker()
    b.start()
    yield b
    b.close()
