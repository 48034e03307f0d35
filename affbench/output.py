"""How affbench writes what it produces: atomic files, plain JSON, manifests and text tables, each in one place.

Fsync policy, decided once for every file written here: the file is flushed and fsynced before it is renamed
into place, and its directory is fsynced after. Without the first, a power loss after the rename can leave an
empty or partial file under the final name on common filesystems (ext4 delayed allocation), which a reader
would then trust; without the second the rename itself may not survive. Every file written through here is a
result of minutes of work (a checkpoint, a manifest, a metrics table, a per-video feature file), so the few
milliseconds an fsync costs are paid everywhere rather than weighed file by file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or directory's entry to disk (a directory: the renames in it). Skipped silently where the
    platform cannot open a directory (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_paths(paths: Sequence[str | os.PathLike]) -> None:
    """`fsync_path` of several files and directories, concurrently: the file system commits them together, so a
    set of a few files costs about one fsync instead of one each. All have been flushed when this returns."""
    if len(paths) < 2:
        for path in paths:
            fsync_path(path)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(paths)), thread_name_prefix="fsync") as pool:
        list(pool.map(fsync_path, paths))


@contextlib.contextmanager
def open_atomic(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """A handle (text by default, ``"wb"`` for bytes) whose content replaces `path` only when the block succeeds.

    The temporary file has a unique name (``.<name>.<random>.tmp``), so processes writing the same path never
    share one, and it is removed when the block fails: readers never see half a file, and nothing is left.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"open_atomic writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with open(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text through a temporary file and os.replace, so readers never see half a file."""
    with open_atomic(path) as handle:
        handle.write(text)
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write bytes through a temporary file and os.replace, so readers never see half a file."""
    with open_atomic(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Pretty, key-sorted JSON written atomically (values JSON cannot hold are written as their str)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def to_jsonable(value: Any, *, other: Callable[[Any], Any] | None = None) -> Any:
    """Plain JSON types from dataclasses, mappings, tuples, paths, numpy scalars and arrays, so that what is
    written compares equal to what is read back, and hashes of it do not depend on container types.

    Non-finite floats become strings (JSON has no NaN). Any other value is passed to `other` (e.g. ``str``,
    or the identity to leave it to ``json.dumps(default=...)``), or refused with a TypeError when there is none.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), other=other)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, other=other) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, other=other) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    # A numpy value exists only once numpy is imported: `affbench --help` and `list` never import it for this.
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), other=other)
    if np is not None and isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if other is not None:
        return other(value)
    raise TypeError(f"value {value!r} of type {type(value).__name__} is not JSON-serialisable")


# -- manifests: a folder's description, written last so that its presence means the folder is complete ----------

MANIFEST = "manifest.json"


def write_manifest(directory: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write `directory`'s manifest (normalised, key-sorted JSON) atomically."""
    return write_text_atomic(Path(directory) / MANIFEST, json.dumps(to_jsonable(manifest), indent=2, sort_keys=True))


def read_json_object(path: str | Path) -> dict:
    """The JSON object in `path`; OSError when it cannot be read, ValueError (naming it) when it is not valid
    UTF-8 JSON holding an object."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


# -- text tables --------------------------------------------------------------------------------------------------


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Left-aligned plain-text columns."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def fixed(x: float, digits: int = 3, sign: str = "") -> str:
    """`x` with `digits` decimals; a value that rounds to zero prints as 0 (never '-0.000')."""
    text = f"{x:{sign}.{digits}f}"
    return f"{0.0:{sign}.{digits}f}" if float(text) == 0.0 else text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
