"""Fixtures and helpers for the hostile-program suites (Python and Java): leftover processes, canary files."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import threading
from pathlib import Path

import pytest


@pytest.fixture
def token() -> str:
    return "cqh" + secrets.token_hex(6)  # 15 chars: the longest name PR_SET_NAME keeps


@pytest.fixture
def canaries(tmp_path):
    """Files a program must not change: a study's results (under /tmp) and something in the user's home."""
    results = tmp_path / "results"
    results.mkdir()
    home = Path(tempfile_home())
    files = {
        results / "samples.jsonl": '{"task_id": "HumanEval/0", "passed": true}\n',
        home / "secret.txt": "key=1\n",
    }
    for d in (results, home):
        d.chmod(0o777)
    for f, text in files.items():
        f.write_text(text)
        f.chmod(0o666)
    snapshot = {d: sorted(os.listdir(d)) for d in (results, home)}
    yield files
    try:
        for f, text in files.items():
            assert f.is_file() and f.read_text() == text, f"{f} was changed"
            assert f.stat().st_mode & 0o777 == 0o666, f"{f} was chmod-ed"
        for d, names in snapshot.items():
            assert sorted(os.listdir(d)) == names, f"files were created in {d}"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def tempfile_home() -> str:
    base = Path.home() / ".cache"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="codequant-canary-", dir=base)


@pytest.fixture
def host_unix_socket():
    """A listening AF_UNIX socket at a host path outside /tmp (so a mount namespace alone does not hide it),
    world-connectable, in the checkout (as the attacker's was: a path every user can traverse);
    yields (path, received bytes)."""
    d = Path(__file__).resolve().parents[2] / f".cq-sock-{secrets.token_hex(4)}"
    d.mkdir()
    d.chmod(0o777)
    path = d / "s"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    path.chmod(0o777)
    srv.listen(4)
    srv.settimeout(0.2)
    got = bytearray()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    while chunk := conn.recv(1024):
                        got.extend(chunk)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield path, got
    stop.set()
    t.join(2)
    srv.close()
    shutil.rmtree(d, ignore_errors=True)
