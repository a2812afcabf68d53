"""Growing a model to an expanded tokenizer (``curate vocab``) and training the new rows.

Three steps, each usable alone:

1. ``resize_embeddings(model, tokenizer_dir)`` grows the input embeddings and the LM head to the
   new vocabulary. A new token's row starts as the mean of the rows of the base tokens it replaces
   (``胰岛素`` = mean of the 4-6 byte-level pieces the base tokenizer used for it), in the input
   embeddings and the LM head alike, so the model reads and scores it roughly as it did the pieces.
   ``init="mean"`` uses transformers' own mean-and-covariance resizing instead.
2. ``warmup_new_embeddings(model, tokenizer, texts, new_ids)``: optional embeddings-only stage
   before LoRA: only the new rows train (peft TrainableTokens), everything else is frozen, and the
   result is merged back into ``model``.
3. ``new_token_peft_kwargs(model, new_ids)``: what to add to a peft config (e.g. ``LoraConfig``)
   so the new rows keep training with the adapter: ``trainable_token_indices`` (only those rows
   train and are saved) or ``modules_to_save`` (the whole embedding matrix and head).

Example::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from peft import LoraConfig, get_peft_model
    from trainplug.embeddings import resize_embeddings, new_token_peft_kwargs, warmup_new_embeddings
    tok = AutoTokenizer.from_pretrained("vocab-out")             # written by `curate vocab`
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    new_ids = resize_embeddings(model, "vocab-out")
    warmup_new_embeddings(model, tok, texts, new_ids, steps=50)   # optional
    model = get_peft_model(model, LoraConfig(target_modules="all-linear",
                                             **new_token_peft_kwargs(model, new_ids)))
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Iterable

REPORT_NAME = "vocab_report.json"   # written by curate.vocab beside the tokenizer files


def _tokenizer_dir(tokenizer) -> Path | None:
    if isinstance(tokenizer, (str, Path)):
        return Path(tokenizer)
    name = getattr(tokenizer, "name_or_path", None)
    return Path(name) if name and Path(name).is_dir() else None


def base_pieces(tokenizer) -> dict[int, list[int]]:
    """``{new_id: [base ids it replaces]}`` from the ``vocab_report.json`` that ``curate vocab``
    writes beside the tokenizer; ``{}`` when there is none (a tokenizer from elsewhere)."""
    d = _tokenizer_dir(tokenizer)
    if d is None or not (d / REPORT_NAME).exists():
        return {}
    report = json.loads((d / REPORT_NAME).read_text(encoding="utf-8"))
    return {int(t["id"]): list(t["base_ids"]) for t in report.get("new_tokens", [])}


def resize_embeddings(model, tokenizer, *, init: str = "subword_mean", pad_to_multiple_of: int | None = None) -> list[int]:
    """Grow ``model``'s input embeddings and LM head (in place) to ``len(tokenizer)`` and return
    the new token ids (every id at or above the old embedding size), in order.

    ``tokenizer`` is the expanded tokenizer or its folder. ``init``:
      * ``"subword_mean"`` (default): a new row = mean of the old rows of the base tokens it
        replaces (read from ``vocab_report.json``), input embeddings and an untied LM head alike;
        tokens without a recorded decomposition fall back to the mean of all old rows.
      * ``"mean"``: transformers' ``resize_token_embeddings(mean_resizing=True)`` (old mean and
        covariance).
    Returns ``[]`` (and leaves the model alone) when the tokenizer adds nothing.
    """
    import torch
    if init not in ("subword_mean", "mean"):
        raise ValueError(f"init must be 'subword_mean' or 'mean', not {init!r}")
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    old = model.get_input_embeddings().weight.shape[0]
    new = len(tokenizer)
    pieces = base_pieces(tokenizer)
    # The report names the new ids; a base whose matrix has spare rows (Qwen pads it to a multiple
    # of 64) may have new tokens in those rows, below ``old``.
    new_ids = sorted(set(range(old, new)) | {i for i in pieces if i < max(old, new)})
    if not new_ids:
        return []
    if new > old:
        model.resize_token_embeddings(new, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=True)
    matrices = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != matrices[0].data_ptr():   # untied head
        matrices.append(head.weight)
    new_set = set(new_ids)
    with torch.no_grad():
        for w in matrices:
            base_rows = [j for j in range(old) if j not in new_set]
            overall = w[base_rows].mean(dim=0)
            for i in new_ids:
                ids = [j for j in pieces.get(i, ()) if j < old and j not in new_set] if init == "subword_mean" else []
                if ids:
                    w[i] = w[ids].mean(dim=0)
                elif i < old:   # a spare row resize did not touch
                    w[i] = overall
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    return new_ids


def new_token_peft_kwargs(model, new_ids: list[int], *, how: str = "trainable_tokens") -> dict:
    """Keyword arguments to add to a peft config so the new rows train with the adapter.

    ``how="trainable_tokens"`` -> ``{"trainable_token_indices": {...}}``: only the new rows of the
    input embeddings (and of an untied LM head) train and are saved; a tied head follows the
    embeddings (peft ties them). ``how="modules_to_save"`` -> the whole embedding matrix and LM
    head train and are saved (more memory; use it when old rows should move too).
    """
    emb_name = _module_name(model, model.get_input_embeddings())
    head = model.get_output_embeddings()
    tied = head is None or head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    head_name = None if head is None else _module_name(model, head)
    if how == "trainable_tokens":
        if not new_ids:
            return {}
        indices = {emb_name: list(new_ids)}
        if not tied and head_name:
            indices[head_name] = list(new_ids)
        return {"trainable_token_indices": indices}
    if how == "modules_to_save":
        return {"modules_to_save": [emb_name] + ([head_name] if head_name and not tied else [])}
    raise ValueError(f"how must be 'trainable_tokens' or 'modules_to_save', not {how!r}")


def _module_name(model, module) -> str:
    """The short name peft matches on (``embed_tokens``, ``lm_head``)."""
    for name, m in model.named_modules():
        if m is module:
            return name.rsplit(".", 1)[-1]
    raise ValueError("module not found in model")


def warmup_new_embeddings(model, tokenizer, texts: Iterable[str], new_ids: list[int], *, steps: int = 100,
                          lr: float = 1e-2, batch_size: int = 8, seq_len: int = 256, seed: int = 0,
                          progress: bool = True) -> list[float]:
    """Embeddings-only warm-up: train only the rows ``new_ids`` (input embeddings and LM head)
    on ``texts`` packed into ``seq_len`` windows, everything else frozen; merge the result into
    ``model`` in place and return the per-step losses. Run it before LoRA so the adapter starts
    from new tokens that already mean something (the usual two-stage vocabulary-expansion recipe).
    """
    import torch
    from peft import TrainableTokensConfig, get_peft_model
    if not new_ids or steps <= 0:
        return []
    torch.manual_seed(seed)
    stream: list[int] = []
    eos = tokenizer.eos_token_id
    for t in texts:
        stream.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
    windows = [stream[i:i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]
    if not windows and len(stream) >= 2:   # less text than one window: one shorter window
        windows = [stream]
    if not windows:
        raise ValueError(f"warm-up texts give {len(stream)} tokens; need at least 2")
    random.Random(seed).shuffle(windows)

    head = model.get_output_embeddings()
    tied = head is None or head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    targets = [_module_name(model, model.get_input_embeddings())]
    if not tied:
        targets.append(_module_name(model, head))
    peft_model = get_peft_model(model, TrainableTokensConfig(token_indices=list(new_ids), target_modules=targets))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    # Lazy update: only the rows of tokens in the batch move.  The softmax gives every new row a
    # small gradient at every step, and Adam scales any gradient to a step of about ``lr``, so
    # without this the thousands of rows a batch never uses all drift the same way (toward minus
    # the mean hidden state): rare tokens stop meaning their pieces, and an expanded model
    # reading them in a prompt falls into loops.  (A tied head shares the embedding's delta.)
    deltas = []
    for module in peft_model.modules():
        if hasattr(module, "trainable_tokens_delta") and getattr(module, "tied_adapter", None) is None:
            for name, delta in module.trainable_tokens_delta.items():
                pos = {int(t): k for k, t in enumerate(module.token_indices[name])}
                deltas.append((delta, pos))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10))
                                              * 0.5 * (1 + math.cos(math.pi * s / steps)))
    device = next(model.parameters()).device
    was_training = model.training
    peft_model.train()
    losses: list[float] = []
    bar = range(steps)
    if progress:
        from tqdm import tqdm
        bar = tqdm(bar, desc="embedding warm-up", unit="step")
    for step in bar:
        batch = [windows[(step * batch_size + k) % len(windows)] for k in range(batch_size)]
        ids = torch.tensor(batch, device=device)
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        in_batch = set(ids.flatten().tolist())
        frozen = []
        for delta, pos in deltas:
            absent = torch.ones(delta.shape[0], dtype=torch.bool, device=delta.device)
            absent[[pos[i] for i in in_batch if i in pos]] = False
            frozen.append((delta, absent, delta.detach()[absent].clone()))
        opt.step()
        with torch.no_grad():
            for delta, absent, rows in frozen:
                delta[absent] = rows
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if progress:
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    merged = peft_model.merge_and_unload()
    assert merged is model or merged.get_input_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    model.train(was_training)
    return losses
