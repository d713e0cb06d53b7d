"""Small shared helpers: atomic file writes, seeding, device choice, content hashes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

log = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the same directory; on success it replaces ``path`` atomically.

    A crash (or ``kill -9``) at any moment leaves ``path`` either absent/old or complete, never
    half-written. The temporary file is removed on error (a ``kill -9`` can leave a hidden
    ``.<name>.*.tmp`` file behind, never a damaged ``<name>``).

    Args:
        path: the final file.
        suffix: suffix of the temporary file (some writers choose the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp_path
        # os.replace is atomic: a killed process (even kill -9) leaves the old file or the new one, never a
        # mix. (No fsync: that would guard against power loss too, at a cost of milliseconds per file.)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file atomically through ``write(fileobj)`` (binary mode)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def derive_seed(seed: int, *stream: int) -> int:
    """A 32-bit seed for one stream of randomness (stage, round, ...), derived from the run seed.

    Different ``stream`` tuples give independent seeds (numpy's SeedSequence hashing), so
    collection, training and evaluation never share random numbers.
    """
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, *stream]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (library code uses explicit generators)."""
    import torch

    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def resolve_device(device: str) -> str:
    """Map ``auto``/``cpu``/``cuda`` to a torch device string.

    ``auto`` picks CUDA when present, CPU otherwise. ``cuda`` on a machine without CUDA is a
    :class:`~rl_lab.errors.ConfigError` (we do not silently run on another device).
    """
    import torch

    from rl_lab.errors import ConfigError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} was asked for, but this machine has no CUDA device that torch can use "
            f"(torch {torch.__version__}). Use device=auto (picks CUDA when present, CPU otherwise) or device=cpu."
        )
    return device


def sha256_arrays(arrays: dict[str, np.ndarray]) -> str:
    """A content hash of named arrays (names, dtypes, shapes and bytes), independent of file format."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def console_handler(**kwargs: Any) -> logging.Handler:
    """Hydra's console log handler: rich's RichHandler (keeps a live progress bar clean).

    On a terminal it uses the terminal's width; elsewhere (pipes, CI logs) a wide console, so report
    lines are not wrapped at 80 columns.
    """
    import sys

    from rich.console import Console
    from rich.logging import RichHandler

    console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    return RichHandler(console=console, **kwargs)
