"""Packing: best-fit bins, the plan (order, phases, mix ratio), boundaries, and that a packed row
gives every example exactly the loss it gets alone (real SmolLM2, sdpa with a block-diagonal mask)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from trainplug.data import Example
from trainplug.packing import IGNORE, Plan, best_fit, collate


def ex(ids, mask=None, rid="x", kind="sft"):
    ids = np.asarray(ids, dtype=np.int32)
    return Example(ids, np.ones(len(ids), bool) if mask is None else np.asarray(mask, bool), rid, kind)


def test_best_fit_places_every_example_once_within_budget():
    rng = random.Random(0)
    lengths = [rng.randint(20, 1024) for _ in range(2000)]
    bins = best_fit(lengths, 4096)
    assert sorted(i for b in bins for i in b) == list(range(2000))
    assert max(sum(lengths[i] for i in b) for b in bins) <= 4096
    fill = sum(lengths) / (len(bins) * 4096)
    assert fill > 0.97, fill
    with pytest.raises(ValueError, match="longer than the batch budget"):
        best_fit([10, 5000], 4096)


def test_plan_is_deterministic_text_first_and_mixes_general_at_the_ratio():
    rng = random.Random(1)
    n_train, n_general = 60, 400
    kinds = ["text"] * 10 + ["sft"] * 50 + ["sft"] * n_general
    lengths = [rng.randint(10, 100) for _ in kinds]
    kw = dict(budget=300, grad_accum=2, epochs=2, max_steps=None, seed=7, mix=(1.0, 5.0))
    a, b = Plan(lengths, kinds, n_train, **kw), Plan(lengths, kinds, n_train, **kw)
    assert a.steps == b.steps and Plan(lengths, kinds, n_train, **{**kw, "seed": 8}).steps != a.steps
    phases = a.phase_of_step
    assert phases == sorted(phases, key=lambda p: p != "text")       # all text steps come first
    sft_examples = [i for s, ph in zip(a.steps, phases) if ph == "sft" for p in s for i in p]
    general = [i for i in sft_examples if i >= n_train]
    domain = [i for i in sft_examples if i < n_train]
    assert len(domain) == 2 * 50 and len(general) == 2 * 5 * 50          # 5 general per domain record, per epoch
    assert len(set(general)) == n_general                                 # the general pool is used up before reuse
    assert all(len(s) <= 2 for s in a.steps)
    longer = Plan(lengths, kinds, n_train, **{**kw, "epochs": 1, "max_steps": 40})
    assert len(longer) == 40                                              # max_steps past the data cycles it


def test_collate_restarts_positions_and_never_learns_across_boundaries():
    exs = [ex([5, 6, 7], [0, 1, 1]), ex([8, 9], [0, 1]), ex([10, 11, 12, 13], [1, 1, 1, 1])]
    b = collate(exs, [0, 1, 2])
    assert b.position_ids.tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert b.cu_seqlens.tolist() == [0, 3, 5, 9]
    # target at t = the token at t+1 when it is learned; an example's last token predicts nothing,
    # so 7 -> 8 and 9 -> 10 (the next example's first token) are never trained
    assert b.targets.tolist() == [[6, 7, IGNORE, 9, IGNORE, 11, 12, 13, IGNORE]]
    assert b.n_trainable == 6 and b.n_tokens == 9
    padded = collate(exs, [0, 1], packed=False)
    assert padded.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert padded.targets.tolist() == [[6, 7, IGNORE], [9, IGNORE, IGNORE]]


def test_packed_loss_equals_each_example_alone(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainplug.data import encode_dialogue
    from trainplug.recipe import loss_sum
    from trainplug.testing import sample_records
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="sdpa").eval()
    exs = [encode_dialogue(r, tok) for r in sample_records()[:3]]
    with torch.no_grad():
        alone = [loss_sum(model, collate(exs, [i]), "sdpa", None).item() for i in range(3)]
        packed = collate(exs, [0, 1, 2])
        together = loss_sum(model, packed, "sdpa", None).item()
        # the same row with positions running on (what naive concatenation does) is a different computation
        naive = collate(exs, [0, 1, 2])
        naive.position_ids = torch.arange(naive.n_tokens)[None]
        leaked = loss_sum(model, naive, "sdpa", None).item()
    assert together == pytest.approx(sum(alone), rel=1e-4)
    assert abs(leaked - sum(alone)) / sum(alone) > 1e-2
