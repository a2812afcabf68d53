"""Which examples each optimizer step sees, and how they become tensors.

* ``best_fit``: best-fit-decreasing bin packing of example lengths into micro-batches of at most
  ``budget`` tokens (no padding waste; typical fill > 97%).
* ``Plan``: the whole run as a list of steps, each a list of packs (lists of example indices), a
  pure function of the lengths, the config and the seed. The data position saved in a checkpoint
  is simply the index of the next step, so a resume (on any number of processes) continues
  exactly. Epochs are built as they are needed; continued pre-training (``text``) examples come
  first, dialogue examples after; general examples are drawn into each epoch at the mix ratio.
* ``collate``: a pack as one row: position ids restart at 0 for every example, targets are
  shifted inside each example and -100 on its last token, so no example learns its first token
  from the one before; ``cu_seqlens`` marks the boundaries for varlen attention.

    >>> best_fit([5, 3, 4, 2], budget=7)
    [[0, 3], [2, 1]]
"""
from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

import numpy as np
import torch

IGNORE = -100


def best_fit(lengths: list[int], budget: int) -> list[list[int]]:
    """Best-fit decreasing: each example (longest first) goes to the fullest bin it still fits."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []          # sorted (room left, bin index)
    for i in order:
        n = lengths[i]
        if n > budget:
            raise ValueError(f"an example of {n} tokens is longer than the batch budget {budget}")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, b = free.pop(k)
            bins[b].append(i)
            bisect.insort(free, (room - n, b))
        else:
            bins.append([i])
            bisect.insort(free, (budget - n, len(bins) - 1))
    return bins


def pad_groups(lengths: list[int], budget: int) -> list[list[int]]:
    """Unpacked micro-batches (one example per row): similar lengths together, rows x longest <= budget."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[cur[0]] > budget:
            groups.append(cur)
            cur = []
        cur.append(i)
    return groups + ([cur] if cur else [])


class Plan:
    """The run's steps; ``steps[k]`` is a list of packs, each a list of indices into ``examples``.

    ``examples`` = the training examples followed by the general ones (indices past ``n_train``).
    """

    def __init__(self, lengths: list[int], kinds: list[str], n_train: int, *, budget: int, grad_accum: int,
                 epochs: int, max_steps: int | None, seed: int, shuffle: bool = True, packing: bool = True,
                 mix: tuple[float, float] | None = None):
        self.lengths, self.kinds, self.n_train = lengths, kinds, n_train
        self.budget, self.grad_accum, self.seed, self.shuffle, self.packing = budget, grad_accum, seed, shuffle, packing
        self.mix = mix
        self.steps: list[list[list[int]]] = []
        self.phase_of_step: list[str] = []
        phases = [ph for ph in ("text", "sft") if any(k == ph for k in kinds[:n_train])]
        for phase in phases:
            domain = [i for i in range(n_train) if kinds[i] == phase]
            general = self._general_stream(phase)
            e = 0
            # `epochs` of every phase; then, up to max_steps, more epochs of the last phase.
            while e < epochs or (phase == phases[-1] and max_steps is not None and len(self.steps) < max_steps):
                self._add_epoch(phase, domain, general, e)
                e += 1
        if max_steps is not None:
            del self.steps[max_steps:]
            del self.phase_of_step[max_steps:]

    @classmethod
    def from_steps(cls, steps: list[list[list[int]]], lengths: list[int]) -> "Plan":
        """A plan given step by step (e.g. a benchmark replaying another trainer's batches)."""
        plan = cls(lengths, ["sft"] * len(lengths), 0, budget=max(lengths, default=1), grad_accum=1, epochs=0,
                   max_steps=None, seed=0)
        plan.steps, plan.phase_of_step = steps, ["sft"] * len(steps)
        plan.budget = max((sum(lengths[i] for i in p) for s in steps for p in s), default=1)
        return plan

    def _general_stream(self, phase: str):
        """General examples of this phase's kind, in seeded rounds: each is used once per round."""
        pool = [i for i in range(self.n_train, len(self.lengths)) if self.kinds[i] == phase]
        for round_ in range(10**9):
            if not pool:
                return
            order = list(pool)
            random.Random(f"{self.seed}:general:{phase}:{round_}").shuffle(order)
            yield from order

    def _add_epoch(self, phase: str, domain: list[int], general, epoch: int) -> None:
        chosen = list(domain)
        if self.mix:
            d, g = self.mix
            want = int(len(domain) * g / d + 1e-9)
            chosen += [i for _, i in zip(range(want), general)]
        rng = random.Random(f"{self.seed}:{phase}:{epoch}")
        lens = [self.lengths[i] for i in chosen]
        groups = best_fit(lens, self.budget) if self.packing else pad_groups(lens, self.budget)
        packs = [[chosen[j] for j in g] for g in groups]
        if self.shuffle:
            rng.shuffle(packs)
            for p in packs:
                rng.shuffle(p)
        for k in range(0, len(packs), self.grad_accum):
            self.steps.append(packs[k:k + self.grad_accum])
            self.phase_of_step.append(phase)

    def __len__(self) -> int:
        return len(self.steps)

    def fill(self) -> float:
        """Share of the micro-batch token budget holding real tokens."""
        packs = [p for s in self.steps for p in s]
        if not packs:
            return 0.0
        used = sum(self.lengths[i] for p in packs for i in p)
        if self.packing:
            return used / (len(packs) * self.budget)
        return used / sum(len(p) * max(self.lengths[i] for i in p) for p in packs)


@dataclass
class Batch:
    input_ids: torch.Tensor       # [rows, T]
    position_ids: torch.Tensor    # [rows, T]
    targets: torch.Tensor         # [rows, T], IGNORE where nothing is learned
    attention_mask: torch.Tensor | None   # [rows, T] for padded rows; None when packed
    cu_seqlens: torch.Tensor | None       # [n+1] int32 boundaries of the packed examples
    max_len: int
    n_tokens: int                 # real (non-pad) tokens
    n_trainable: int

    def to(self, device) -> "Batch":
        mv = lambda t: None if t is None else t.to(device, non_blocking=True)   # noqa: E731
        return Batch(mv(self.input_ids), mv(self.position_ids), mv(self.targets), mv(self.attention_mask),
                     mv(self.cu_seqlens), self.max_len, self.n_tokens, self.n_trainable)


def _targets(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    t = np.full(len(ids), IGNORE, dtype=np.int64)
    t[:-1] = np.where(mask[1:], ids[1:], IGNORE)
    return t


def collate(examples, pack: list[int], packed: bool = True, pad_id: int = 0) -> Batch:
    exs = [examples[i] for i in pack]
    lens = [len(e) for e in exs]
    if packed:
        ids = torch.from_numpy(np.concatenate([e.ids for e in exs]).astype(np.int64))[None]
        pos = torch.from_numpy(np.concatenate([np.arange(n) for n in lens]))[None]
        tgt = torch.from_numpy(np.concatenate([_targets(e.ids, e.mask) for e in exs]))[None]
        cu = torch.tensor([0] + list(np.cumsum(lens)), dtype=torch.int32)
        return Batch(ids, pos, tgt, None, cu, max(lens), sum(lens), int((tgt != IGNORE).sum()))
    T = max(lens)
    ids = torch.full((len(exs), T), pad_id, dtype=torch.long)
    tgt = torch.full((len(exs), T), IGNORE, dtype=torch.long)
    att = torch.zeros((len(exs), T), dtype=torch.long)
    for r, e in enumerate(exs):
        ids[r, :len(e)] = torch.from_numpy(e.ids.astype(np.int64))
        tgt[r, :len(e)] = torch.from_numpy(_targets(e.ids, e.mask))
        att[r, :len(e)] = 1
    pos = torch.arange(T)[None].expand(len(exs), -1).contiguous()
    return Batch(ids, pos, tgt, att, None, T, sum(lens), int((tgt != IGNORE).sum()))


def step_trainable_tokens(examples, step: list[list[int]]) -> int:
    """Learned tokens in a whole step (all micro-batches, all processes): the loss denominator."""
    return sum(examples[i].n_trainable for pack in step for i in pack)


def warmup_steps(n_steps: int, ratio: float) -> int:
    return math.ceil(n_steps * ratio)
