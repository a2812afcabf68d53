"""The sft run config: YAML (safe_load) plus command-line flags, checked in full before any work.

``load_config`` returns the *resolved* config (every default filled in, method defaults applied),
the same dict that is saved beside every checkpoint, or raises ConfigError listing every problem.

    >>> cfg = load_config(None, overrides={"data": "samples/medical.jsonl", "method": "lora"}, check_paths=False)
    >>> cfg["lr"], cfg["lora"]["r"]
    (0.0002, 16)
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

METHODS = ("lora", "qlora", "ia3", "prefix", "full")

DEFAULTS: dict = {
    "data": None,                 # curated set: .parquet / .jsonl, or a `curate run` output folder
    "general": None,              # general data mixed in at `mix` (same formats)
    "mix": None,                  # "DOMAIN:GENERAL" record counts, "1:5" = 5 general per domain record
    "model": None,                # local transformers folder; none = SmolLM2-135M-Instruct
    "tokenizer": None,            # a tokenizer folder (e.g. from `curate vocab`); none = the model's
    "chat_template": None,        # none = the tokenizer's; else a .jinja file
    "method": "lora",
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear", "use_dora": False},
    "ia3": {"target_modules": None, "feedforward_modules": None},   # none: peft's per-architecture default
    "prefix": {"num_virtual_tokens": 20},
    # --tokenizer growth; the warm-up trains only the new rows (lr 1e-2 measured in bench/vocab.py)
    "new_tokens": {"train": "trainable_tokens", "warmup_steps": 0, "warmup_lr": 1e-2, "warmup_batch": 8,
                   "warmup_seq_len": 512},
    "train_on": "all_assistant",  # or last_assistant
    "max_seq_len": 2048,
    "overlong": "truncate",       # truncate (keep the start) or drop (listed in events.jsonl)
    "packing": True,              # false: one example per row, padded (prefix tuning always)
    "batch_tokens": None,         # token budget of one micro-batch; none: 16384 on GPU, 2048 on CPU
    "grad_accum": 1,              # micro-batches per optimizer step (over all processes)
    "epochs": 1,
    "max_steps": None,            # optimizer steps; more than `epochs` give cycles the data again
    "lr": None,                   # none: the method's default (below)
    "weight_decay": 0.0,
    "warmup_ratio": 0.03,
    "max_grad_norm": 1.0,
    "seed": 42,
    "shuffle": True,
    "precision": "auto",          # auto: bf16 on GPU, fp32 on CPU
    "attention": "auto",          # auto: flash varlen on GPU where torch has it, else sdpa (block-diagonal)
    "gradient_checkpointing": False,
    "compile": "auto",            # torch.compile each decoder layer: auto = on GPU; true; false
    "eval_fraction": 0.05,        # held-out share of the domain data (seeded by record id)
    "eval_max": 256,              # at most this many held-out records
    "eval_every": 100,            # steps; 0 = only at the end
    "eval_at_start": True,
    "early_stopping_patience": None,   # evals without improvement before stopping
    "early_stopping_min_delta": 0.0,   # an eval loss must drop by more than this to count as better
    "save_every": 100,            # checkpoint every N steps (and always at the end)
    "keep_checkpoints": 3,
    "guard": {"enabled": True, "ema_beta": 0.9, "warmup_steps": 5, "spike_factor": 3.0, "spike_steps": 2,
              "lr_factor": 0.5, "max_rollbacks": 3, "max_nonfinite": 5},
    "out": "out/sft",
    "tensorboard": True,
    "progress": True,
    "threads": None,              # CPU threads for torch; none = torch's default (all cores; 1-2 on a busy box)
}

METHOD_LR = {"lora": 2e-4, "qlora": 2e-4, "ia3": 3e-3, "prefix": 1e-2, "full": 1e-5}
FULL_LR_ADVICE = 2e-5
NESTED = ("lora", "ia3", "prefix", "new_tokens", "guard")
CHOICES = {"method": METHODS, "train_on": ("all_assistant", "last_assistant"), "overlong": ("truncate", "drop"),
           "precision": ("auto", "bf16", "fp32"),
           "attention": ("auto", "varlen", "sdpa", "eager", "flash_attention_2", "flex_attention"),
           "compile": ("auto", True, False)}


def _type_name(v) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


# Types not read off the default (None = anything; such keys are checked further below).
OPTIONAL_TYPES = {"lr": float, "batch_tokens": int, "threads": int, "max_steps": int,
                  "early_stopping_patience": int,
                  "data": str, "general": str, "model": str, "tokenizer": str, "chat_template": str,
                  "mix": None, "compile": None, "target_modules": (str, list), "feedforward_modules": (str, list)}


def _typed(name: str, default, val, problems: list[str]):
    """``val`` checked against the default's type; returns the value to use (or None after a problem)."""
    short = name.rsplit(".", 1)[-1]
    expected = OPTIONAL_TYPES[short] if short in OPTIONAL_TYPES else type(default) if default is not None else None
    if val is None or expected is None:
        return val
    if expected is float and isinstance(val, str):
        try:   # YAML 1.1 (PyYAML) reads 1e-5, without a dot, as a string: take the number it means
            val = float(val)
        except ValueError:
            pass
    if expected is bool or expected is int:
        ok = isinstance(val, expected) and (expected is bool or not isinstance(val, bool))
    elif expected is float:
        ok = isinstance(val, (int, float)) and not isinstance(val, bool)
    else:
        ok = isinstance(val, expected)
    if not ok:
        want = " or ".join(_type_name(t()) for t in (expected if isinstance(expected, tuple) else (expected,)))
        problems.append(f"{name}: expected {want}, got {val!r}")
        return None
    return val


def load_config(path: str | None = None, *, overrides: dict | None = None, check_paths: bool = True) -> dict:
    """Merge YAML and flags (flags that are not None win), fill defaults, validate everything."""
    from curate.config import ConfigError
    problems: list[str] = []
    raw: dict = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError([f"config file {path!r} does not exist"])
        except yaml.YAMLError as e:
            raise ConfigError([f"{path}: not valid YAML: {e}"])
        if not isinstance(raw, dict):
            raise ConfigError([f"{path}: the top level must be a mapping"])
        base = Path(path).parent
        # Paths in a YAML file are relative to the file (as in `curate run`); `out` always, inputs
        # where that file exists (a model name such as "smollm2" is no path).
        for key in ("data", "general", "model", "tokenizer", "chat_template", "out"):
            v = raw.get(key)
            if isinstance(v, str) and v and not Path(v).is_absolute() and (key == "out" or (base / v).exists()):
                raw[key] = str(base / v)
    cfg = copy.deepcopy(DEFAULTS)
    for key, val in {**raw, **{k: v for k, v in (overrides or {}).items() if v is not None}}.items():
        if key not in DEFAULTS:
            problems.append(f"{key}: unknown key (known: {', '.join(sorted(DEFAULTS))})")
        elif key in NESTED:
            if not isinstance(val, dict):
                problems.append(f"{key}: expected a mapping, got {val!r}")
                continue
            for sub, sv in val.items():
                if sub not in DEFAULTS[key]:
                    problems.append(f"{key}.{sub}: unknown option (known: {', '.join(sorted(DEFAULTS[key]))})")
                else:
                    n = len(problems)
                    sv = _typed(f"{key}.{sub}", DEFAULTS[key][sub], sv, problems)
                    if len(problems) == n:
                        cfg[key][sub] = sv
        else:
            n = len(problems)
            val = _typed(key, DEFAULTS[key], val, problems)
            if len(problems) == n:
                cfg[key] = val
    problems += _problems(cfg, check_paths)
    if problems:
        raise ConfigError(problems)
    if cfg["lr"] is None:
        cfg["lr"] = METHOD_LR[cfg["method"]]
    if cfg["method"] == "prefix":
        cfg["packing"] = False   # prefix key/values are per row: packed examples would share them
    return cfg


def _problems(cfg: dict, check_paths: bool) -> list[str]:
    out = []
    for key, choices in CHOICES.items():
        if cfg[key] not in choices:
            out.append(f"{key}: {cfg[key]!r} is not one of {', '.join(map(str, choices))}")
    if not cfg["data"]:
        out.append("data: no training data given (use --data PATH or data: in the config)")
    for key in ("data", "general", "tokenizer", "chat_template"):
        if check_paths and cfg[key] and not Path(cfg[key]).exists():
            out.append(f"{key}: {cfg[key]!r} does not exist")
    if cfg["mix"] is not None:
        from curate.steps.mix import parse_ratio
        if isinstance(cfg["mix"], int) and not isinstance(cfg["mix"], bool) and cfg["mix"] >= 60:
            out.append(f"mix: YAML read an unquoted ratio as the base-60 number {cfg['mix']}; quote it: mix: \"1:5\"")
        else:
            try:
                parse_ratio(cfg["mix"])
            except ValueError as e:
                out.append(f"mix: {e}")
        if not cfg["general"]:
            out.append("mix: a ratio needs general data (--general PATH)")
    for key, low in (("max_seq_len", 8), ("grad_accum", 1), ("epochs", 1), ("save_every", 1), ("keep_checkpoints", 1),
                     ("eval_max", 0), ("eval_every", 0)):
        if isinstance(cfg[key], int) and cfg[key] < low:
            out.append(f"{key}: must be at least {low}, got {cfg[key]}")
    for key in ("batch_tokens", "max_steps", "early_stopping_patience", "threads"):
        if cfg[key] is not None and (not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1):
            out.append(f"{key}: expected a positive integer or nothing, got {cfg[key]!r}")
    if isinstance(cfg["batch_tokens"], int) and isinstance(cfg["max_seq_len"], int) and cfg["batch_tokens"] < cfg["max_seq_len"]:
        out.append(f"batch_tokens ({cfg['batch_tokens']}) must be at least max_seq_len ({cfg['max_seq_len']}) "
                   "so that the longest example fits one micro-batch")
    if not 0 <= cfg["eval_fraction"] < 1:
        out.append(f"eval_fraction: must be in [0, 1), got {cfg['eval_fraction']}")
    if not 0 <= cfg["warmup_ratio"] < 1:
        out.append(f"warmup_ratio: must be in [0, 1), got {cfg['warmup_ratio']}")
    if cfg["lr"] is not None and not cfg["lr"] > 0:
        out.append(f"lr: must be positive, got {cfg['lr']}")
    lora = cfg["lora"]
    if not (isinstance(lora["r"], int) and lora["r"] > 0):
        out.append(f"lora.r: must be a positive integer, got {lora['r']!r}")
    if not 0 <= lora["dropout"] < 1:
        out.append(f"lora.dropout: must be in [0, 1), got {lora['dropout']}")
    if cfg["new_tokens"]["train"] not in ("trainable_tokens", "modules_to_save"):
        out.append(f"new_tokens.train: {cfg['new_tokens']['train']!r} is not trainable_tokens or modules_to_save")
    for sub in ("warmup_batch", "warmup_seq_len"):
        if isinstance(cfg["new_tokens"][sub], int) and cfg["new_tokens"][sub] < 1:
            out.append(f"new_tokens.{sub}: must be at least 1, got {cfg['new_tokens'][sub]}")
    g = cfg["guard"]
    if not 0 < g["ema_beta"] < 1:
        out.append(f"guard.ema_beta: must be in (0, 1), got {g['ema_beta']}")
    if g["spike_factor"] <= 1:
        out.append(f"guard.spike_factor: must be above 1, got {g['spike_factor']}")
    if g["spike_steps"] < 1:
        out.append(f"guard.spike_steps: must be at least 1, got {g['spike_steps']}")
    if cfg["method"] == "qlora":
        out += qlora_problems()
    return out


def qlora_problems() -> list[str]:
    """QLoRA's 4-bit weights need a CUDA GPU and bitsandbytes: say so before loading anything."""
    import importlib.util

    import torch
    out = []
    if not torch.cuda.is_available():
        out.append("method: qlora needs a CUDA GPU (4-bit weights through bitsandbytes); this machine has none. "
                   "Use --method lora here.")
    if importlib.util.find_spec("bitsandbytes") is None:
        out.append("method: qlora needs the bitsandbytes package (pip install bitsandbytes) on a CUDA machine")
    return out


def full_lr_warning(cfg: dict) -> str | None:
    if cfg["method"] == "full" and cfg["lr"] > FULL_LR_ADVICE:
        return (f"lr {cfg['lr']:g} is above {FULL_LR_ADVICE:g}, the usual ceiling for full fine-tuning "
                "(higher rates tend to erase what the model knew)")
    return None
