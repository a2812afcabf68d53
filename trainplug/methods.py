"""The fine-tuning methods, all through peft (full fine-tuning aside): building the trainable
model, saving what was trained, and merging an adapter into its base.

    lora    LoraConfig(r, lora_alpha, lora_dropout, target_modules="all-linear", use_dora)
    qlora   the same on 4-bit NF4 base weights (bitsandbytes, CUDA only)
    ia3     IA3Config (peft's per-architecture target modules unless named)
    prefix  PrefixTuningConfig(num_virtual_tokens)
    full    every weight trains (fp32 master weights, bf16 autocast on GPU)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .models import resolve_model


def load_base(cfg: dict, tok, device: torch.device, dtype: torch.dtype, attn_impl: str):
    """The base model on ``device``, grown to the tokenizer when it has more tokens than the model."""
    from transformers import AutoModelForCausalLM
    path = resolve_model(cfg["model"])
    kwargs = {"dtype": dtype, "attn_implementation": attn_impl}
    if cfg["method"] == "qlora":
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    if cfg["method"] != "qlora":
        model.to(device)
    new_ids: list[int] = []
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        from .embeddings import resize_embeddings
        new_ids = resize_embeddings(model, tok)
    return model, path, new_ids


def peft_config(cfg: dict, extra: dict | None = None):
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, TaskType
    m, extra = cfg["method"], dict(extra or {})
    if m in ("lora", "qlora"):
        lo = cfg["lora"]
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=lo["r"], lora_alpha=lo["alpha"], lora_dropout=lo["dropout"],
                          target_modules=lo["target_modules"], use_dora=lo["use_dora"], **extra)
    if m == "ia3":
        ia = {k: v for k, v in cfg["ia3"].items() if v is not None}
        return IA3Config(task_type=TaskType.CAUSAL_LM, **ia)
    if m == "prefix":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg["prefix"]["num_virtual_tokens"])
    raise ValueError(m)


def make_trainable(model, cfg: dict, new_ids: list[int]):
    """Wrap ``model`` for the method; returns the model to train (a PeftModel unless full)."""
    if cfg["method"] == "full":
        model.requires_grad_(True)
        return model
    if cfg["method"] == "qlora":
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg["gradient_checkpointing"])
    from peft import get_peft_model
    extra = {}
    if new_ids:
        from .embeddings import new_token_peft_kwargs
        extra = new_token_peft_kwargs(model, new_ids, how=cfg["new_tokens"]["train"])
        if cfg["method"] not in ("lora", "qlora"):
            raise ValueError(f"training new tokens needs lora or full, not {cfg['method']}")
    return get_peft_model(model, peft_config(cfg, extra))


def trainable_state(model) -> dict[str, torch.Tensor]:
    """What a checkpoint stores of the model: only the parameters that train."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} trainable tensors (e.g. {missing[0]}); "
                         "was it written with another method or model?")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


def save_trained(model, tok, cfg: dict, base_path: Path, dest: Path) -> None:
    """Write the adapter (or, for full fine-tuning, the whole model) to ``dest`` atomically."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # A PeftModel writes adapter_model.safetensors + adapter_config.json; a full model its weights.
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    (tmp / "trainplug.json").write_text(json.dumps(
        {"method": cfg["method"], "base_model": str(base_path), "tokenizer": cfg["tokenizer"]}, indent=2))
    _replace_dir(tmp, dest)


def _replace_dir(tmp: Path, dest: Path) -> None:
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def merge(adapter_dir: str | Path, out_dir: str | Path, model: str | None = None, dtype: str = "auto") -> Path:
    """Merge a LoRA / IA3 adapter into its base model and save a plain transformers folder.

        >>> merge("out/sft/adapter", "out/merged")   # doctest: +SKIP
    """
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir} holds no adapter_config.json (is it a trainplug adapter/ folder?)")
    pc = PeftConfig.from_pretrained(str(adapter_dir))
    if pc.peft_type.value in ("PREFIX_TUNING", "P_TUNING", "PROMPT_TUNING"):
        raise ValueError(f"a {pc.peft_type.value.lower()} adapter adds virtual tokens and cannot be merged into "
                         "the weights; load it with peft.PeftModel.from_pretrained instead")
    meta = json.loads((adapter_dir / "trainplug.json").read_text()) if (adapter_dir / "trainplug.json").exists() else {}
    base = resolve_model(model or meta.get("base_model") or pc.base_model_name_or_path)
    tok = AutoTokenizer.from_pretrained(str(adapter_dir) if (adapter_dir / "tokenizer_config.json").exists() else str(base))
    torch_dtype = {"auto": "auto", "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    base_model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch_dtype)
    if len(tok) > base_model.get_input_embeddings().weight.shape[0]:
        from .embeddings import resize_embeddings
        resize_embeddings(base_model, tok)   # the adapter carries the trained new rows
    merged = PeftModel.from_pretrained(base_model, str(adapter_dir)).merge_and_unload()
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    _replace_dir(tmp, out_dir)
    return out_dir
