"""Every file the toolkit writes goes through here: written to a temporary name in the same
folder, flushed, then renamed, so a crash or kill never leaves a file that looks complete."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import polars as pl

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path``, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``dst`` becomes ``src`` without copying where the filesystem allows (a hard link), else an
    atomic copy."""
    Path(dst).unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str), encoding="utf-8")


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl(path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n


def write_parquet(path, df: pl.DataFrame | pl.LazyFrame) -> None:
    with atomic_path(path) as tmp:
        if isinstance(df, pl.LazyFrame):
            df.sink_parquet(tmp)
        else:
            df.write_parquet(tmp)


def read_records(path) -> Iterator[dict]:
    """Records from a curated Parquet or JSONL file (the schema's own formats)."""
    from .schema import from_frame
    path = str(path)
    if path.endswith(".parquet"):
        yield from from_frame(pl.read_parquet(path))
    else:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    rec = json.loads(line)
                    rec.setdefault("meta", {})
                    rec.setdefault("messages", [])
                    rec.setdefault("text", None)
                    yield rec
