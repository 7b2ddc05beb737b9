"""Scratch directories: one fresh directory per run, removed afterwards whatever the program left in it.

A program can leave any tree behind: read-only files and directories, thousands of nested directories
(`os.mkdir("d"); os.chdir("d")` in a loop), names at NAME_MAX, paths longer than PATH_MAX. `shutil.rmtree`
recurses once per level and raises RecursionError past ~1000 levels (and fails on paths past PATH_MAX), which
used to stop a whole evaluation. `remove_tree` is iterative and works on directory file descriptors: every
directory found below the top is renamed up to the top level (so no path ever grows and at most two
directories are open at a time), its files are unlinked, and it is removed. It never raises: what it cannot
remove is left (and reported by its return value) for the start-up sweep.

Directories are named `codequant-sbx-<runner pid>-<random>`, so `sweep_stale` can remove those of runners that
died (`kill -9`) without touching the ones of runners still alive. Standard library only: the reaper
(`reaper.py`) imports this file by path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = "codequant-sbx-"
_NAME = re.compile(rf"^{PREFIX}(\d+)-")


@contextlib.contextmanager
def scratch_dir(owner: tuple[int, int] | None = None) -> Iterator[Path]:
    """A fresh private directory (the program's cwd and HOME), removed afterwards whatever the program did."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    try:
        if owner is not None:
            os.chown(path, *owner)
        yield path
    finally:
        if not remove_tree(path):
            logging.getLogger("codequant.sandbox").warning(
                "sandbox: could not remove %s (left for the start-up sweep)", path
            )


def _writable_dir(parent: int, name: str) -> int | None:
    """Open `name` in `parent` as a directory we can list and empty (made 0700 first); None if it is not one."""
    with contextlib.suppress(OSError):
        os.chmod(name, 0o700, dir_fd=parent, follow_symlinks=False)
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError:
        return None


def _empty_into(top: int, fd: int, counter: list[int]) -> None:
    """Unlink the files of directory `fd`; rename its subdirectories into `top` (flat, short names)."""
    with os.scandir(fd) as entries:
        names = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in names:
        if is_dir and fd == top:
            continue  # already at the top level
        if is_dir:
            counter[0] += 1
            with contextlib.suppress(OSError):
                os.rename(name, f".cq-rm-{counter[0]}", src_dir_fd=fd, dst_dir_fd=top)
                continue
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=fd)


def remove_tree(path: Path | str) -> bool:
    """Remove `path` and everything below it, however deep or read-only; never raises. True when it is gone."""
    path = str(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            return True
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    counter = [0]
    try:
        for _ in range(1_000_000):  # each pass removes at least one directory or stops
            with contextlib.suppress(OSError):
                _empty_into(top, top, counter)
            with os.scandir(top) as entries:
                dirs = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
            if not dirs:
                break
            progress = False
            for name in dirs:
                fd = _writable_dir(top, name)
                if fd is None:
                    continue
                try:
                    _empty_into(top, fd, counter)
                finally:
                    os.close(fd)
                with contextlib.suppress(OSError):
                    os.rmdir(name, dir_fd=top)
                    progress = True
            if not progress and not _moved_any(top, dirs):
                break
    except OSError:
        pass
    finally:
        os.close(top)
    with contextlib.suppress(OSError):
        os.rmdir(path)
    return not os.path.lexists(path)


def _moved_any(top: int, before: list[str]) -> bool:
    """Did the last pass change the top level (subdirectories moved up count as progress)?"""
    try:
        with os.scandir(top) as entries:
            return sorted(e.name for e in entries) != sorted(before)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(base: Path | str | None = None, owner: int | None = None) -> list[Path]:
    """Remove scratch dirs of runners that are gone (or, with `owner`, of that runner pid); returns them."""
    base = Path(base or tempfile.gettempdir())
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for path in entries:
        m = _NAME.match(path.name)
        if not m:
            continue
        pid = int(m.group(1))
        if ((pid == owner) if owner is not None else not _alive(pid)) and remove_tree(path):
            removed.append(path)
    return removed
