"""Safe encoding and decoding of shard payloads: .npy arrays, .json metadata, .jpg and .cls bytes, nothing else.

Shards are data a user may have downloaded from anywhere, so decoding never runs code: arrays are parsed from
the .npy header and viewed with ``np.frombuffer`` (object dtypes are refused before any byte of the body is
read, and pickle is never imported for them), JSON is parsed with ``json.loads``, and any other member
extension (``.pyd``, ``.pickle``, ``.pth`` ...) makes the sample corrupt.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

# The extensions a shard member may carry. ".npy" is matched as a suffix ("features.npy", "labels.npy" ...).
SAFE_EXTENSIONS = ("npy", "json", "jpg", "cls")


class CorruptShardError(ValueError):
    """A shard (or one sample in it) cannot be read safely: truncated, malformed, or carrying unsafe payloads."""

    def __init__(self, shard: str, message: str, *, key: str | None = None) -> None:
        self.shard = str(shard)
        self.key = key
        where = f"{self.shard}" + (f", sample '{key}'" if key is not None else "")
        super().__init__(f"corrupt shard {where}: {message}")


def is_safe_extension(ext: str) -> bool:
    """Whether a member extension (the part after the sample key, e.g. "features.npy") is a safe payload."""
    last = ext.rsplit(".", 1)[-1].lower()
    return last in SAFE_EXTENSIONS


def encode_npy(array: np.ndarray) -> bytes:
    """.npy bytes of a numeric array (object arrays are refused: they would need pickle)."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"refusing to store an object-dtype array ({array.dtype}): shards hold numeric arrays only")
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


_HEADER_CACHE: dict[bytes, tuple[tuple[int, ...], bool, np.dtype, int]] = {}
_HEADER_CACHE_SIZE = 256


def _npy_header(data: bytes, what: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    # Windows of one shard set share a handful of distinct headers; parsing each (numpy evaluates the header
    # literal with ast) once instead of per array is a measurable part of loader throughput.
    if len(data) < 10:
        raise ValueError(f"{what}: not a valid .npy payload ({len(data)} bytes)")
    major = data[6]
    if major == 1:
        end = 10 + int.from_bytes(data[8:10], "little")
    else:
        end = 12 + int.from_bytes(data[8:12], "little")
    raw = bytes(data[:end])
    cached = _HEADER_CACHE.get(raw)
    if cached is not None:
        return cached
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError) as exc:
        raise ValueError(f"{what}: not a valid .npy payload ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"{what}: object-dtype .npy ({dtype}) refused; it could only be loaded by unpickling")
    parsed = (shape, fortran, dtype, stream.tell())
    if len(_HEADER_CACHE) >= _HEADER_CACHE_SIZE:
        _HEADER_CACHE.clear()
    _HEADER_CACHE[raw] = parsed
    return parsed


def decode_npy(data: bytes | memoryview, what: str = "array") -> np.ndarray:
    """A read-only array viewing ``data`` (no copy); raises ValueError for object dtypes or a malformed header."""
    shape, fortran, dtype, offset = _npy_header(data, what)
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(
            f"{what}: .npy body holds {len(data) - offset} bytes, header {shape} {dtype} needs {count * dtype.itemsize}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    if fortran:
        return array.reshape(shape[::-1]).T
    return array.reshape(shape)


def encode_json(obj: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON (deterministic bytes for identical metadata)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_json(data: bytes | memoryview, what: str = "json") -> dict:
    """A JSON object from ``data``; raises ValueError when it is not valid UTF-8 JSON holding an object."""
    try:
        obj = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    return obj
