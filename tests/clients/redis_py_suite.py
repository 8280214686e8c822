"""redis-py's own stream tests (from the sdist of the installed redis-py) against cortex's
RESP port, the Redis 8 ones included: the server reports 7.4.x, so the harness forces the
suite's version check (REDIS_INFO["version"]) to FORCE_REDIS_VERSION instead of the server
reporting 8.x. Tests named in NOT_HERE need what cortex does not have and are deselected,
each with its reason."""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import redis
from redis_py_streams import start_cortex

FORCE_REDIS_VERSION = "8.10.0"

# Deselected: each needs something cortex does not have.
NOT_HERE = {
    "test_xinfo_stream_idempotent_fields": "XINFO STREAM shows Redis 8.6's IDMP fields only on a stream "
    "that uses IDMP (XCFGSET or XADD IDMP): the port reports 7.4, and go-redis up to 9.17 (the seed's swarm "
    "uses 9.5) refuses XINFO STREAM replies with fields it does not know",
    "test_xgroup_create_entriesread_fixed_max_entries_read": "Redis 8's clamp of ENTRIESREAD to the entries added (cortex keeps 7.4's rule, which "
    "Redis 7.4's own suite checks)",
    "test_xgroup_setid_fixed_max_entries_read": "Redis 8's clamp of ENTRIESREAD to the entries added (cortex keeps 7.4's rule)",
}

PLUGIN = f'''
import pytest

@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    from tests import conftest
    conftest.REDIS_INFO["version"] = "{FORCE_REDIS_VERSION}"
'''


def suite_dir(work):
    """The installed redis-py's sdist, unpacked (its tests are not in the wheel)."""
    version = redis.__version__
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            f"redis=={version}",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            work,
        ],
        check=True,
    )
    with tarfile.open(os.path.join(work, f"redis-{version}.tar.gz")) as t:
        t.extractall(work, filter="data")
    return os.path.join(work, f"redis-{version}")


def main():
    work = tempfile.mkdtemp(prefix="redis-py-suite-")
    root = suite_dir(work)
    with open(os.path.join(root, "force_version.py"), "w") as f:
        f.write(PLUGIN)
    proc, data, port = start_cortex()
    try:
        deselect = [
            f"--deselect=tests/test_commands.py::TestRedisCommands::{t}"
            for t in NOT_HERE
        ]
        for name, why in NOT_HERE.items():
            print(f"deselected {name}: {why}")
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "force_version",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:warnings",
                "tests/test_commands.py",
                "-k",
                "TestRedisCommands and test_x",
                f"--redis-url=redis://127.0.0.1:{port}/0",
                *deselect,
            ],
            check=False,
            cwd=root,
            env={**os.environ, "PYTHONPATH": root},
        )
        return r.returncode
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
