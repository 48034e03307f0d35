"""Fault injection for the reliability tests: damage a file, run a command, assert the one-line contract.

Adding a case is a few lines::

    def test_something_broken(tmp_path):
        path = write_config(tmp_path, "train: {lr: .nan}")
        assert_input_error(cli("train", str(path)), "train.lr", "finite")
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from affbench.cli import main

HERE = Path(__file__).resolve().parent


@dataclass
class Outcome:
    """What a command did: its exit code and what it printed."""

    code: int
    out: str
    err: str


def cli(*argv: str) -> Outcome:
    """Run `affbench ARGV` in this process (``--quiet`` first) and capture its output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["--quiet", *argv])
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 2
    return Outcome(code, out.getvalue(), err.getvalue())


def cli_process(*argv: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300
                ) -> subprocess.CompletedProcess:
    """Run `python -m affbench ARGV` in a fresh process (for plugins, locks and kills)."""
    return subprocess.run([sys.executable, "-m", "affbench", "--quiet", *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


def error_lines(err: str) -> list[str]:
    """The `... error: ...` lines of stderr (warnings and progress are other lines)."""
    return [line for line in err.splitlines() if ": error: " in line]


def assert_input_error(outcome: Outcome | subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, no traceback, exactly one error line, holding every fragment; returns that line."""
    code = outcome.code if isinstance(outcome, Outcome) else outcome.returncode
    err = outcome.err if isinstance(outcome, Outcome) else outcome.stderr
    assert code == 2, f"exit code {code}, stderr:\n{err}"
    assert "Traceback" not in err, err
    lines = error_lines(err)
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def flip_byte(path: Path, offset: int | None = None, *, keep_mtime: bool = False) -> None:
    """Invert one byte in place (same size): the middle one unless `offset` is given; `keep_mtime` sets the
    access and modification times back to what they were (only the ctime, which no call can set, moves)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def truncate(path: Path, keep: int = 0) -> None:
    """Cut a file to its first `keep` bytes (0: a zero-byte file)."""
    path.write_bytes(path.read_bytes()[:keep])


def replace_file(path: Path, data: bytes) -> None:
    """Replace a file's bytes and move its mtime forward (as a copy or an edit would)."""
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def valid_jpeg(seed: int, size: int = 16) -> bytes:
    """A decodable JPEG of random pixels (different seeds give different images)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_config(folder: Path, text: str, name: str = "row.yaml", base: str = "synthaffect/va/ours") -> Path:
    """A config file that includes a built-in config and adds `text` (YAML) on top."""
    path = folder / name
    path.write_text(f"include: {base}\n{text}\n", encoding="utf-8")
    return path
