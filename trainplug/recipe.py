"""trainplug sft: the whole training recipe, start to end, in one file.

    prepare  config -> tokenizer -> dataset (masks) -> plan (packed steps) -> model (+ peft)
    train    for each planned step:
               forward/backward every micro-batch (loss summed over learned tokens, divided by the
               learned tokens of the *whole* step on all processes, so accumulation and data
               parallelism give the same gradient as one big batch)
               clip -> spike guard (apply / skip / rollback) -> AdamW + cosine schedule
               log, evaluate, early-stop, checkpoint
    finish   adapter/ (best eval), last checkpoint, metrics.jsonl, events.jsonl, report.html

No Trainer and no callbacks: read it top to bottom. Example::

    from trainplug.config import load_config
    from trainplug.recipe import run
    summary = run(load_config(overrides={"data": "out/curated.parquet", "max_steps": 20, "out": "out/sft"}))
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import attention, checkpoint, dist
from .data import Dataset, build_dataset, load_tokenizer
from .guard import SpikeGuard
from .methods import load_base, load_trainable_state, make_trainable, save_trained, trainable_state
from .models import resolve_model
from .packing import IGNORE, Plan, collate, step_trainable_tokens, warmup_steps
from .report import RunLog, write_report

# Keys that may change between a run and its resume (they do not change what is computed).
RESUME_MAY_CHANGE = {"out", "progress", "tensorboard", "save_every", "keep_checkpoints", "threads"}


class RunError(RuntimeError):
    """A run that cannot start or go on; the message says what to do."""


@dataclass
class Setup:
    cfg: dict
    world: dist.World
    tok: object
    dataset: Dataset
    plan: Plan
    model: torch.nn.Module          # the trainable model (PeftModel, or the model for full)
    base_path: Path
    attn_impl: str
    autocast_dtype: torch.dtype | None
    data_events: list[dict]


# -- prepare ----------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_runtime(cfg: dict, world: dist.World) -> tuple[torch.dtype, torch.dtype | None]:
    """(dtype to load weights in, autocast dtype or None). bf16 on GPU, fp32 on CPU by default."""
    bf16 = cfg["precision"] == "bf16" or (cfg["precision"] == "auto" and world.device.type == "cuda")
    if cfg["batch_tokens"] is None:
        cfg["batch_tokens"] = max(16384 if world.device.type == "cuda" else 2048, cfg["max_seq_len"])
    if not bf16:
        return torch.float32, None
    # Frozen base weights can live in bf16; full fine-tuning keeps fp32 master weights.
    return (torch.float32 if cfg["method"] == "full" else torch.bfloat16), torch.bfloat16


def make_plan(cfg: dict, dataset: Dataset) -> Plan:
    from curate.steps.mix import parse_ratio
    examples = dataset.train + dataset.general
    return Plan([len(e) for e in examples], [e.kind for e in examples], len(dataset.train),
                budget=cfg["batch_tokens"], grad_accum=cfg["grad_accum"], epochs=cfg["epochs"],
                max_steps=cfg["max_steps"], seed=cfg["seed"], shuffle=cfg["shuffle"], packing=cfg["packing"],
                mix=parse_ratio(cfg["mix"]) if cfg["mix"] and dataset.general else None)


def build_model(cfg: dict, tok, world: dist.World, dataset: Dataset | None = None):
    load_dtype, _ = resolve_runtime(cfg, world)
    attn_impl = attention.choose(cfg["attention"], world.device, cfg["packing"])
    model, base_path, new_ids = load_base(cfg, tok, world.device, load_dtype, attn_impl)
    if new_ids and cfg["new_tokens"]["warmup_steps"] > 0 and dataset is not None:
        from .embeddings import warmup_new_embeddings
        texts = [tok.decode(e.ids) for e in dataset.train]
        nt = cfg["new_tokens"]
        warmup_new_embeddings(model, tok, texts, new_ids, steps=nt["warmup_steps"], lr=nt["warmup_lr"],
                              batch_size=nt["warmup_batch"], seq_len=min(nt["warmup_seq_len"], cfg["max_seq_len"]),
                              seed=cfg["seed"], progress=cfg["progress"] and world.main)
    return wrap_model(cfg, model, new_ids, world), base_path, attn_impl, new_ids


def wrap_model(cfg: dict, model, new_ids: list[int], world: dist.World):
    """The loaded base model -> the model to train (method, checkpointing, adapter dtype)."""
    if cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = make_trainable(model, cfg, new_ids)
    model.config.use_cache = False
    if resolve_runtime(cfg, world)[1] is not None:
        keep_adapter_inputs_in_compute_dtype(model)
    if cfg["compile"] is True or (cfg["compile"] == "auto" and world.device.type == "cuda"):
        compile_layers(model)
    return model


def compile_layers(model) -> int:
    """torch.compile each decoder layer on its own (regional compilation, as torchtune does).

    One compiled graph serves every layer, so compiling takes seconds, and each layer's many small
    kernels (norms, rotary, adapters, activations) fuse: a step of a few thousand tokens is bound
    by launching them, not by the matmuls. Shapes are dynamic (packed rows differ in length).
    A compile error falls back to eager execution (dynamo's suppress_errors)."""
    import torch._dynamo
    torch._dynamo.config.suppress_errors = True
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def keep_adapter_inputs_in_compute_dtype(model) -> None:
    """Under autocast, let adapters take bf16 inputs: peft otherwise copies every adapted layer's
    input to the adapter's fp32 dtype (an extra full-size activation per layer, saved for backward)
    although autocast runs the adapter's matmul in bf16 anyway."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    for m in model.modules():
        if isinstance(m, BaseTunerLayer):
            m.cast_input_dtype_enabled = False


def prepare(cfg: dict, world: dist.World | None = None) -> Setup:
    world = world or dist.init()
    if cfg["threads"]:   # torch's default (every core) slows tiny CPU steps down badly on a busy machine
        torch.set_num_threads(cfg["threads"])
    seed_everything(cfg["seed"])
    _, autocast_dtype = resolve_runtime(cfg, world)
    model_dir = resolve_model(cfg["model"])
    tok = load_tokenizer(model_dir, cfg["tokenizer"], cfg["chat_template"])
    dataset, data_events = build_dataset(cfg, tok, progress=cfg["progress"] and world.main)
    plan = make_plan(cfg, dataset)
    if len(plan) == 0:
        raise RunError("the plan has no training step (no training examples after the held-out split?)")
    model, base_path, attn_impl, new_ids = build_model(cfg, tok, world, dataset)
    if new_ids:
        data_events.append({"event": "vocab_expanded", "new_tokens": len(new_ids), "vocab": len(tok)})
    return Setup(cfg, world, tok, dataset, plan, model, base_path, attn_impl, autocast_dtype, data_events)


# -- the loss --------------------------------------------------------------------------------------

def loss_sum(model, batch, attn_impl: str, autocast_dtype) -> torch.Tensor:
    """Summed cross-entropy over the batch's learned tokens; logits only at those positions."""
    ctx = torch.autocast(batch.input_ids.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with ctx:
        if batch.attention_mask is None:   # one packed row
            keep = (batch.targets[0] != IGNORE).nonzero().squeeze(1)
            out = model(input_ids=batch.input_ids, position_ids=batch.position_ids, logits_to_keep=keep,
                        use_cache=False, **attention.forward_kwargs(attn_impl, batch))
            logits, y = out.logits[0], batch.targets[0, keep]
        else:                              # padded rows (prefix tuning, packing: false)
            out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
            sel = batch.targets != IGNORE
            logits, y = out.logits[sel], batch.targets[sel]
    return F.cross_entropy(logits.float(), y, reduction="sum")


@torch.no_grad()
def evaluate(s: Setup, model) -> float | None:
    """Mean loss per learned token over the held-out examples (split over the processes)."""
    if not s.dataset.eval:
        return None
    from .packing import best_fit, pad_groups
    lens = [len(e) for e in s.dataset.eval]
    packs = (best_fit if s.cfg["packing"] else pad_groups)(lens, s.cfg["batch_tokens"])
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for pack in packs[s.world.rank::s.world.size]:
        b = collate(s.dataset.eval, pack, s.cfg["packing"], s.tok.pad_token_id or 0).to(s.world.device)
        total += loss_sum(model, b, s.attn_impl, s.autocast_dtype).item()
        count += b.n_trainable
    model.train(was)
    total, count = dist.all_sum(s.world, [total, float(count)])
    return total / count if count else None


# -- train -----------------------------------------------------------------------------------------

def _set_lr_scale(opt, sched, base_lr: float, scale: float) -> None:
    sched.base_lrs = [base_lr * scale for _ in sched.base_lrs]
    for g, lam in zip(opt.param_groups, sched.lr_lambdas):
        g["lr"] = base_lr * scale * lam(sched.last_epoch)


def _ckpt_step(path: Path) -> int:
    return int(path.name[len(checkpoint.PREFIX):])


def _check_resume_config(saved: dict, cfg: dict) -> None:
    from curate.config import ConfigError
    diffs = [f"{k}: the checkpoint has {saved.get(k)!r}, this run {cfg.get(k)!r}"
             for k in sorted(set(saved) | set(cfg)) if k not in RESUME_MAY_CHANGE and saved.get(k) != cfg.get(k)]
    if diffs:
        raise ConfigError(["--resume continues the same run; these settings differ:"] + diffs)


def train(s: Setup, resume: bool = False) -> dict:
    cfg, world, model = s.cfg, s.world, s.model
    out = Path(cfg["out"])
    examples = s.dataset.train + s.dataset.general
    existing = checkpoint.list_checkpoints(out)
    if resume and not existing:
        raise RunError(f"--resume: {checkpoint.ckpt_dir(out)} holds no checkpoint to continue from")
    if existing and not resume:
        raise RunError(f"{out} already holds checkpoints of a run; pass --resume to continue it, or use another --out")

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=world.device.type == "cuda")
    from transformers import get_cosine_schedule_with_warmup
    sched = get_cosine_schedule_with_warmup(opt, warmup_steps(len(s.plan), cfg["warmup_ratio"]), len(s.plan))
    guard = SpikeGuard(cfg["guard"])
    st = {"step": 0, "cursor": 0, "skipped": [], "lr_scale": 1.0, "best_eval": None, "best_step": None,
          "evals_since_best": 0, "tokens_seen": 0, "train_seconds": 0.0}

    resumed_from = None
    if resume:
        ck = checkpoint.load(existing[-1], world.device)
        _check_resume_config(ck["config"], cfg)
        load_trainable_state(model, ck["weights"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        st.update({k: v for k, v in ck["state"].items() if k in st})
        guard.load_state_dict(ck["state"]["guard"])
        rngs = ck["rng"]
        checkpoint.set_rng_state(rngs[world.rank] if len(rngs) == world.size else rngs[0])
        resumed_from = st["step"]
    log = RunLog(out, enabled=world.main, tensorboard=cfg["tensorboard"], resume_step=resumed_from)
    if resume:
        log.event("resumed", step=st["step"], checkpoint=existing[-1].name, world_size=world.size)
    elif world.main:
        for e in s.data_events:
            log.event(e.pop("event"), **e)

    ddp = model
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel
        ddp = DistributedDataParallel(model, device_ids=[world.local_rank] if world.device.type == "cuda" else None)

    def save_ckpt() -> None:
        rngs = dist.gather(world, checkpoint.rng_state())
        if world.main:
            checkpoint.save(out, st["step"], weights=trainable_state(model), optimizer=opt.state_dict(),
                            scheduler=sched.state_dict(), rng=rngs, config=cfg,
                            state={**st, "guard": guard.state_dict(), "world_size": world.size},
                            keep=cfg["keep_checkpoints"])
        dist.barrier(world)

    def save_output() -> None:
        if world.main:
            save_trained(model, s.tok, cfg, s.base_path, out / ("model" if cfg["method"] == "full" else "adapter"))
        dist.barrier(world)

    if not resume and cfg["guard"]["enabled"]:
        save_ckpt()   # step 0: a rollback target before the first periodic checkpoint

    bar = None
    if cfg["progress"] and world.main:
        from tqdm import tqdm
        bar = tqdm(total=len(s.plan), initial=st["cursor"], unit="step", desc="sft", dynamic_ncols=True)
    status, t_run = "finished", time.perf_counter()
    if not resume and cfg["eval_at_start"]:
        ev = evaluate(s, model)
        if ev is not None:
            log.event("eval", step=0, eval_loss=ev)
    spike_window: list[int] = []      # data cursors of the current run of spikes / non-finite steps
    spike_start_step = 0
    model.train()
    while st["cursor"] < len(s.plan):
        cursor = st["cursor"]
        if cursor in st["skipped"]:
            st["cursor"] += 1
            continue
        step_packs = s.plan.steps[cursor]
        t0 = time.perf_counter()
        n_learn = step_trainable_tokens(examples, step_packs)
        mine = step_packs[world.rank::world.size]
        n_local = math.ceil(len(step_packs) / world.size)
        ce_total, tokens = 0.0, 0
        for k in range(n_local):
            pack, weight = (mine[k], 1.0) if k < len(mine) else (step_packs[0], 0.0)   # a pad micro-batch keeps DDP in step
            batch = collate(examples, pack, cfg["packing"], s.tok.pad_token_id or 0).to(world.device)
            sync = contextlib.nullcontext() if (world.size == 1 or k == n_local - 1) else ddp.no_sync()
            with sync:
                ce = loss_sum(ddp, batch, s.attn_impl, s.autocast_dtype)
                (ce * (weight * world.size / max(n_learn, 1))).backward()
            ce_total += ce.item() * weight
            tokens += batch.n_tokens if weight else 0
        ce_total, tokens = dist.all_sum(world, [ce_total, float(tokens)])
        loss = ce_total / max(n_learn, 1)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"]))
        verdict = guard.check(loss, grad_norm)
        lr = opt.param_groups[0]["lr"]

        if verdict in ("skip", "spike", "rollback", "give_up"):
            if not spike_window:
                spike_start_step = st["step"]
            spike_window.append(cursor)
            log.event("nonfinite_skip" if not math.isfinite(loss) or not math.isfinite(grad_norm) else "spike",
                      step=st["step"] + 1, cursor=cursor, loss=loss, grad_norm=grad_norm,
                      ema_loss=guard.ema_loss, ema_grad_norm=guard.ema_grad)
        else:
            spike_window = []

        if verdict == "give_up":
            log.event("guard_gave_up", step=st["step"], rollbacks=guard.rollbacks, max_rollbacks=cfg["guard"]["max_rollbacks"])
            status = "stopped: the spike guard ran out of rollbacks"
            opt.zero_grad(set_to_none=True)
            break
        if verdict == "rollback":
            opt.zero_grad(set_to_none=True)
            target = [p for p in checkpoint.list_checkpoints(out) if _ckpt_step(p) <= spike_start_step]
            if not target:
                status = "stopped: a rollback found no checkpoint"
                log.event("rollback_failed", step=st["step"], reason="no checkpoint at or before the spike")
                break
            history = {"skipped": sorted(set(st["skipped"]) | set(spike_window)),
                       "lr_scale": st["lr_scale"] * cfg["guard"]["lr_factor"]}
            ck = checkpoint.load(target[-1], world.device)
            load_trainable_state(model, ck["weights"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            rngs = ck["rng"]
            checkpoint.set_rng_state(rngs[world.rank] if len(rngs) == world.size else rngs[0])
            guard.load_state_dict(ck["state"]["guard"], keep_rollbacks=True)
            from_step = st["step"]
            st.update({k: v for k, v in ck["state"].items() if k in st})
            st.update(history)
            _set_lr_scale(opt, sched, cfg["lr"], st["lr_scale"])
            log.truncate(st["step"])
            log.event("rollback", step=from_step, to_step=st["step"], checkpoint=target[-1].name,
                      skipped_cursors=list(spike_window), lr_scale=st["lr_scale"], rollbacks=guard.rollbacks)
            spike_window = []
            if bar:
                bar.n = st["cursor"]
                bar.refresh()
            continue
        if verdict == "skip":
            opt.zero_grad(set_to_none=True)
            st["cursor"] += 1
            if bar:
                bar.update(1)
            continue

        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        st["step"] += 1
        st["cursor"] += 1
        dt = time.perf_counter() - t0
        st["tokens_seen"] += int(tokens)
        st["train_seconds"] += dt
        row = {"step": st["step"], "loss": loss, "grad_norm": grad_norm, "lr": lr, "tokens": int(tokens),
               "trainable_tokens": n_learn, "tokens_per_s": tokens / dt, "step_seconds": dt,
               "phase": s.plan.phase_of_step[cursor], "cursor": cursor}
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / dt:,.0f}")

        last = st["cursor"] >= len(s.plan)
        stop = False
        if s.dataset.eval and ((cfg["eval_every"] and st["step"] % cfg["eval_every"] == 0) or last):
            ev = evaluate(s, model)
            row["eval_loss"] = ev
            if st["best_eval"] is None or ev < st["best_eval"] - cfg["early_stopping_min_delta"]:
                st.update(best_eval=ev, best_step=st["step"], evals_since_best=0)
                save_output()
            else:
                st["evals_since_best"] += 1
                pat = cfg["early_stopping_patience"]
                if pat and st["evals_since_best"] >= pat:
                    log.event("early_stop", step=st["step"], best_step=st["best_step"], best_eval=st["best_eval"])
                    status, stop = "early stopped", True
        log.metrics(row)
        if (st["step"] % cfg["save_every"] == 0 or last or stop) and not guard.in_spike:
            save_ckpt()
        if stop:
            break

    if bar:
        bar.close()
    ckpts = checkpoint.list_checkpoints(out)
    if not status.startswith("stopped") and (not ckpts or _ckpt_step(ckpts[-1]) != st["step"]):
        save_ckpt()   # the end state is always a checkpoint (a guard stop keeps the last good one)
    if not s.dataset.eval or not (out / ("model" if cfg["method"] == "full" else "adapter")).exists():
        save_output()
    summary = {
        "status": status, "steps": st["step"], "planned_steps": len(s.plan), "skipped_steps": len(st["skipped"]),
        "rollbacks": guard.rollbacks, "best_eval_loss": st["best_eval"], "best_step": st["best_step"],
        "tokens_seen": st["tokens_seen"], "train_seconds": round(st["train_seconds"], 2),
        "tokens_per_s": round(st["tokens_seen"] / st["train_seconds"], 1) if st["train_seconds"] else None,
        "wall_seconds": round(time.perf_counter() - t_run, 2), "world_size": world.size,
        "device": str(world.device), "attention": s.attn_impl, "pack_fill": round(s.plan.fill(), 4),
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated(world.device) / 2**30, 3) if world.device.type == "cuda" else None,
        "trainable_params": sum(p.numel() for p in params),
        "total_params": sum(p.numel() for p in model.parameters()),
        "data": s.dataset.stats, "config": cfg,
    }
    if world.main:
        from curate.writing import write_json

        from .report import manifest
        write_json(out / "manifest.json", manifest(summary))
        write_report(out, summary)
    log.close()
    return summary


def finished_run(cfg: dict) -> dict | None:
    """The manifest of a finished run with the same settings in ``cfg['out']`` (re-running it is a no-op)."""
    import json
    path = Path(cfg["out"]) / "manifest.json"
    ckpts = checkpoint.list_checkpoints(Path(cfg["out"]))
    if not path.exists() or not ckpts:
        return None
    done = json.loads(path.read_text(encoding="utf-8"))
    if _ckpt_step(ckpts[-1]) != done.get("steps"):   # the end state was lost: resume from what is there
        return None
    saved = done.get("config", {})
    same = all(saved.get(k) == v for k, v in cfg.items()
               if k not in RESUME_MAY_CHANGE and not (k == "batch_tokens" and v is None))
    return done if same and done.get("status") in ("finished", "early stopped") else None


def run(cfg: dict, resume: bool = False) -> dict:
    """Prepare from the resolved config and train; the summary dict is also in OUT/manifest.json.
    A finished run with the same settings is not run again: its manifest is returned."""
    done = finished_run(cfg)
    if done is not None:
        return {**done, "status": "already finished (nothing to do)"}
    s = prepare(cfg)
    try:
        return train(s, resume=resume)
    finally:
        dist.close(s.world)
