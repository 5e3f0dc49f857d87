"""Small file-system helpers: atomic publication with normal permissions, a cross-process lock, memoised file
digests, and the checks that keep names and paths taken from data inside their folders."""
from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``target``; on success it gets normal permissions (0666 & ~umask, not
    mkstemp's 0600) and replaces ``target`` in one rename, so a reader never sees a half-written file."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=suffix or "".join(target.suffixes))
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed), held for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless the file already holds exactly it; True when written.
    Exported files keep their bytes (and git stays quiet) when nothing changed."""
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


# --- names and paths that come from data -------------------------------------------------------------------
# A patient id, protocol, method or config name read from a CSV, a record or a user's file becomes part of a
# file name; ``safe_name`` refuses what could leave the folder, and ``path_under`` checks the final path.

MAX_NAME_CHARS = 128


def name_problem(text: object) -> str | None:
    """Why ``text`` cannot be one component of a file name (None when it can): empty, a path separator,
    '.' or '..', a control character, or longer than ``MAX_NAME_CHARS``."""
    if not isinstance(text, str):
        return f"is a {type(text).__name__}, not text"
    if not text:
        return "is empty"
    if "/" in text or "\\" in text:
        return "contains a path separator"
    if text in (".", ".."):
        return f"is {text!r}"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "contains a control character"
    if len(text) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    return None


def safe_name(text: object, what: str) -> str:
    """``text`` when it can be one component of a file name, else ``BenchInputError`` naming ``what`` (the
    file, column or field it came from)."""
    from bench.errors import BenchInputError

    problem = name_problem(text)
    if problem:
        raise BenchInputError(f"{what} {text!r} cannot be used in a file name: it {problem}")
    return text  # type: ignore[return-value]


def is_under(path: Path, root: Path) -> bool:
    """Whether ``path`` (resolved, symbolic links followed) lies in or is the folder ``root`` (resolved)."""
    root_r = Path(root).resolve()
    target = Path(path).resolve()
    return target == root_r or root_r in target.parents


def path_under(root: Path, *parts: str | Path) -> Path:
    """``root / parts``, required to stay under ``root`` once resolved (no '..', absolute part or symbolic
    link leads out of it); ``BenchInputError`` otherwise. Every output path built from data goes through it."""
    from bench.errors import BenchInputError

    target = Path(root).joinpath(*parts)
    if not is_under(target, root):
        raise BenchInputError(f"{target}: refusing to write outside {root} (a name from the data leads out of it)")
    return target


def writable_dir(path: Path, option: str = "--out") -> Path:
    """The folder ``path``, created if needed and known to be writable; ``BenchInputError`` naming ``option``
    and the path otherwise."""
    from bench.errors import BenchInputError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BenchInputError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


@contextmanager
def output_errors(root: Path, option: str = "--out") -> Iterator[None]:
    """Turn an OSError on a file under ``root`` (read-only folder, disk full, a file where a folder should be)
    into ``BenchInputError`` naming ``option`` and the file; other errors pass through."""
    from bench.errors import BenchInputError

    try:
        yield
    except OSError as exc:
        name = exc.filename
        if name is None or not is_under(Path(name), Path(root)):
            raise
        raise BenchInputError(f"{option} {root}: cannot write {name} ({exc.strerror or exc})") from None


def file_digest(path: Path, memo_dir: Path) -> str:
    """sha256 of a file's bytes, memoised under ``memo_dir`` by (path, size, mtime, ctime, inode): any rewrite
    of the file changes its ctime, so a stale digest is never returned."""
    import hashlib
    import json

    path = Path(path)
    st = path.stat()
    ident = hashlib.sha1(str(path.resolve()).encode()).hexdigest()
    memo = Path(memo_dir) / f"{ident}.json"
    stat_key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    if memo.is_file():
        try:
            rec = json.loads(memo.read_text())
            if rec["stat"] == stat_key:
                return rec["sha256"]
        except (ValueError, KeyError, TypeError, OSError):
            pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with atomic_path(memo, ".json") as tmp:
        tmp.write_text(json.dumps({"path": str(path), "stat": stat_key, "sha256": digest}))
    return digest


def file_slug(text: str) -> str:
    """A name as it appears in a file name: letters, digits, -, _ and . kept, anything else a dash."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-") or "x"
