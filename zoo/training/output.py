"""The output folder of a training run: refusing to reuse one by accident, locking it while a run holds it, and
writing each epoch's artefacts so that ``checkpoint.pt`` is the single commit point.

An epoch ends with: the new best model written whole into a staging folder (``.best-epochN.partial``, renamed to
``.best-epochN.tmp`` once complete; not yet visible), then ``checkpoint.pt`` replaced atomically (the commit),
then the staged folder swapped in as ``best/``, then ``metrics.jsonl`` rewritten from the checkpoint's history.
A run killed anywhere in between is repaired by :func:`recover` when the folder is next used: a committed best
is swapped in, an uncommitted one is dropped, ``metrics.jsonl`` is rewritten from the checkpoint (no duplicate
rows), and temporary files are removed. Ctrl-C during these writes is delivered after them
(:func:`interrupts_deferred`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from zoo.errors import ZooError
from zoo.hub.files import write_text_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

LOCK = ".zoo-train.lock"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CURVES = "curves.png"
BEST = "best"
_OLD_BEST = ".best.old"
_STAGED = re.compile(r"^\.best-epoch(\d+)\.tmp$")
_ARTEFACTS = (CHECKPOINT, METRICS, CURVES, BEST, _OLD_BEST)


def check_reusable(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an output folder that already holds files, unless the run resumes it or overwrites it."""
    if resume and overwrite:
        raise ZooError("resume=True (--resume) continues the run in the output folder and overwrite=True "
                       "(--overwrite) starts it over: pass one of them, not both")
    if out.exists() and not out.is_dir():
        raise ZooError(f"output {out} is a file; expected a folder (new or empty) for the run's results")
    if resume or overwrite or not out.is_dir():
        return
    present = sorted(p.name for p in out.iterdir() if p.name != LOCK)
    if present:
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise ZooError(f"output folder {out} is not empty (it holds {shown}): a previous run's results would be "
                       f"overwritten. Continue that run with --resume (resume=True), replace its results with "
                       f"--overwrite (overwrite=True), or choose another --output")


def check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any training starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".zoo-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ZooError(f"output folder {out} is not writable ({reason}); choose another --output") from None


@contextmanager
def hold(out: Path) -> Iterator[None]:
    """Lock ``out`` for this process while the block runs; a live run holding it already is an error.

    The lock is an OS lock (``flock``) on ``out/.zoo-train.lock``, released by the OS when its process dies, so
    the lock file of a crashed run (its pid no longer running) is simply taken over."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK
    fd = _acquire(path)
    try:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        yield
    finally:
        try:
            os.unlink(path)  # while still locked: a process that opened the old file sees it is gone and retries
        except OSError:
            pass
        os.close(fd)


def _acquire(path: Path) -> int:
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise ZooError(f"output folder {path.parent} is in use by another training run ({_describe(path)}); "
                           f"wait for it to finish or choose another --output. (The lock {path} is released when "
                           f"that process ends; a lock left by a crashed run is taken over automatically)")
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed the file between our open and lock: try the new one
    raise ZooError(f"could not lock {path}: other runs keep taking it")


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _describe(path: Path) -> str:
    """Who holds the lock, from what it wrote into the lock file."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def clear(out: Path) -> None:
    """Remove a previous run's artefacts (for ``overwrite=True``); other files in ``out`` are left alone."""
    for name in _ARTEFACTS:
        _remove(out / name)
    _remove_temporaries(out)


def stage_best(out: Path, epoch: int, write: Callable[[Path], None]) -> Path:
    """Epoch ``epoch``'s best model, written by ``write(folder)`` into ``.best-epochN.partial`` and renamed to
    ``.best-epochN.tmp`` once complete; published by :func:`publish_best` after the checkpoint commits it."""
    partial, staged = out / f".best-epoch{epoch}.partial", out / f".best-epoch{epoch}.tmp"
    _remove(partial)
    _remove(staged)
    write(partial)
    partial.rename(staged)
    return staged


def publish_best(out: Path, staged: Path) -> None:
    """Swap the complete ``staged`` folder in as ``out/best`` (the previous one is removed afterwards)."""
    best, old = out / BEST, out / _OLD_BEST
    if best.exists():
        _remove(old)
        best.rename(old)
    staged.rename(best)
    _remove(old)


def write_metrics(out: Path, history: List[Dict[str, float]]) -> None:
    """``metrics.jsonl``: one JSON line per finished epoch, rewritten whole from the committed history."""
    write_text_atomic(out / METRICS, "".join(json.dumps(row) + "\n" for row in history))


def recover(out: Path, best_epoch: Optional[int], history: List[Dict[str, float]]) -> None:
    """Bring ``out`` in line with its checkpoint (``best_epoch`` and ``history``) after a run was killed."""
    for staged in sorted(out.glob(".best-epoch*.tmp")):
        match = _STAGED.match(staged.name)
        if match and best_epoch is not None and int(match.group(1)) == best_epoch:
            publish_best(out, staged)  # committed: the swap had not finished
        else:
            _remove(staged)  # never committed
    old = out / _OLD_BEST
    if old.exists():
        if (out / BEST).exists():
            _remove(old)
        else:
            old.rename(out / BEST)
    _remove_temporaries(out)
    if history or (out / METRICS).exists():
        write_metrics(out, history)


def _remove_temporaries(out: Path) -> None:
    """Temporary files of interrupted atomic writes (``.NAME.XXXX.tmp``) and uncommitted staging folders."""
    for name in (CHECKPOINT, METRICS, CURVES):
        for leftover in out.glob(f".{name}.*.tmp"):
            _remove(leftover)
    for staged in [*out.glob(".best-epoch*.tmp"), *out.glob(".best-epoch*.partial")]:
        _remove(staged)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) while the block writes an epoch's artefacts, then deliver it: an interrupted run
    stops between epochs' writes, never inside them (a hard kill is repaired by :func:`recover` instead)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: List[Tuple[int, Optional[FrameType]]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(*received[0])  # the default handler raises KeyboardInterrupt


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
