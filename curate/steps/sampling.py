"""Seeded, order-independent choice of records, shared by the sampling steps (balance, mix).

A record's rank is a hash of (seed, id): the same seed keeps the same records whatever order the
parts arrive in, on any machine and any library version (blake2b, not Python's salted ``hash`` or
a library's unspecified one), and a record's fate does not depend on which other records exist.

    >>> seeded_keep(["a", "b", "c", "d"], 2, seed=0) == seeded_keep(["d", "c", "b", "a"], 2, seed=0)
    True
"""
from __future__ import annotations

from hashlib import blake2b


def seeded_rank(rid: str, seed: int) -> bytes:
    return blake2b(rid.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()


def seeded_keep(ids: list[str], n: int, seed: int) -> set[str]:
    """The ``n`` ids (all when fewer) with the lowest seeded rank."""
    if n >= len(ids):
        return set(ids)
    return set(sorted(ids, key=lambda rid: seeded_rank(rid, seed))[:max(n, 0)])
