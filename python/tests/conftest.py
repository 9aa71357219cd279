"""Fixtures: a private broker per test, the native programs (the `ringbus`
CLI, libringbus and the C examples) built once per session, and helpers to
run Python child processes against a broker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import ringbus

REPO = Path(__file__).resolve().parents[2]
# Generous: the machine may be busy; tests never gate on speed.
PATIENCE = 120.0


@pytest.fixture
def broker():
    """A broker of our own (a thread of this process, private directory)."""
    with ringbus.EmbeddedBroker() as b:
        yield b


@pytest.fixture
def client(broker):
    return broker.client()


def child_env(broker) -> dict:
    env = dict(os.environ)
    env["RINGBUS_SOCKET"] = broker.socket
    return env


def python_child(broker, script: str, *args: str, **kw) -> subprocess.Popen:
    """Starts `python -c script args...` talking to `broker`."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=child_env(broker),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_ready(proc: subprocess.Popen) -> None:
    """Reads the child's first line, which must be "ready"."""
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child did not get ready: {line!r}\n{out}\n{err}")


def finish(proc: subprocess.Popen, what: str) -> str:
    """Waits for the child to succeed; returns its remaining stdout."""
    try:
        out, err = proc.communicate(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{what} did not finish:\n{out}\n{err}")
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{out}\n{err}"
    return out


@dataclass
class Native:
    """The native programs: the broker/CLI binary and the C examples."""

    ringbus: Path
    lib_dir: Path
    c_publisher: Path
    c_subscriber: Path


def _target_dir() -> Path:
    t = os.environ.get("CARGO_TARGET_DIR")
    return Path(t) if t else REPO / "target"


@pytest.fixture(scope="session")
def native(tmp_path_factory) -> Native:
    """Builds the CLI and libringbus (debug, as `cargo build` does), then
    compiles the C examples against them as ffi/tests/c_clients.rs does."""
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "ringbus-ffi", "-p", "ringbus-cli"],
        cwd=REPO,
        check=True,
    )
    lib_dir = _target_dir() / "debug"
    out = tmp_path_factory.mktemp("c")
    progs = {}
    for name in ("publisher", "subscriber"):
        exe = out / name
        subprocess.run(
            [
                "cc", "-std=c11", "-Wall", "-Wextra", "-Werror",
                "-I", str(REPO / "include"),
                str(REPO / "examples" / "c" / f"{name}.c"),
                "-o", str(exe),
                "-L", str(lib_dir), "-lringbus", f"-Wl,-rpath,{lib_dir}",
            ],
            check=True,
        )
        progs[name] = exe
    return Native(
        ringbus=lib_dir / "ringbus",
        lib_dir=lib_dir,
        c_publisher=progs["publisher"],
        c_subscriber=progs["subscriber"],
    )


# The test payload of examples/c/common.h: message i has a length and bytes
# derived from i. Rows of the byte pattern, one per starting value, make it
# cheap to build in Python.
_ROWS = [bytes((base + 7 * j) & 0xFF for j in range(4096)) for base in range(256)]


def c_payload(i: int, max_size: int = 1024) -> bytes:
    n = (i * 7919) % (max_size + 1)
    return _ROWS[(i * 31 + (i >> 8)) & 0xFF][:n]
