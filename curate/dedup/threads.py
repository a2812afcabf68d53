"""``thread_map``: a function over items in threads, or inline for one worker.  The dedup kernels
release the GIL (_kernels.c, numpy's sort), so threads use both cores without processes."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable


def thread_map(fn: Callable, items: Iterable, workers: int) -> list:
    if workers <= 1:
        return [fn(it) for it in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
