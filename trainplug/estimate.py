"""GPU memory for a fine-tuning run, worked out before anything is loaded onto a GPU.

The model is built from its ``config.json`` on the ``meta`` device (shapes only, no memory), the
method's peft wrapper applied, and the parameters counted. Then, per component:

* weights      frozen weights in bf16 (2 B; QLoRA 4-bit NF4 ~0.56 B for the linear layers), trainable
               ones in fp32 (4 B; full fine-tuning keeps fp32 master weights + a bf16 copy, 6 B)
* gradients    fp32, trainable parameters only (4 B)
* optimizer    AdamW's two fp32 moments (8 B per trainable parameter)
* activations  what the backward pass keeps per token and layer in bf16 (norm inputs/outputs,
               q/k/v, attention output, the MLP's gate/up/product; LoRA dropout inputs), or only
               each layer's input with gradient checkpointing; plus fp32 logits and their gradient
               for the learned tokens
* overhead     CUDA context and allocator slack: 1 GiB + 5%

For a 7B Llama at 2,048 tokens a micro-batch this gives ~133 GiB for full fine-tuning and
~25 GiB for LoRA r=16 (the usual rules of thumb: ~160 GB and ~24 GB).

    >>> est = estimate("path/to/Llama-2-7b", "lora", seq_len=2048, batch=1)   # doctest: +SKIP
    >>> round(est["total_gib"])                                               # doctest: +SKIP
    25
"""
from __future__ import annotations

import copy

GIB = 2**30


def _meta_model(model_dir: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.from_pretrained(str(model_dir))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model, config


def count_params(model_dir: str, cfg: dict) -> dict:
    """Total and trainable parameters for the method, on the meta device."""
    from .methods import peft_config
    model, config = _meta_model(model_dir)
    total = sum(p.numel() for p in model.parameters())
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if m.__class__.__name__ == "Linear" and not n.endswith("lm_head"))
    if cfg["method"] == "full":
        trainable = total
    else:
        from peft import get_peft_model
        c = copy.deepcopy(cfg)
        c["method"] = "lora" if c["method"] == "qlora" else c["method"]
        pm = get_peft_model(model, peft_config(c))
        trainable = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "linear": linear, "config": config}


def activation_bytes(config, tokens: int, learned_tokens: int, *, lora_dropout: bool, checkpointing: bool) -> dict:
    h = config.hidden_size
    i = getattr(config, "intermediate_size", 4 * h)
    n_layers = config.num_hidden_layers
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", heads) * getattr(config, "head_dim", h // heads)
    per_token_layer = 2 * (6 * h + 2 * kv + 4 * i)            # bf16 tensors kept for backward
    if lora_dropout:
        per_token_layer += 2 * (6 * h + i)                     # each adapted linear keeps its dropped-out input
    layers = (n_layers * 2 * h + per_token_layer) * tokens if checkpointing else n_layers * per_token_layer * tokens
    logits = learned_tokens * config.vocab_size * (2 + 4 + 4)  # bf16 logits, fp32 copy, fp32 gradient
    return {"layers": layers, "logits": logits}


def estimate(model_dir: str, method: str = "lora", *, seq_len: int = 2048, batch: int = 1, cfg: dict | None = None,
             learned_share: float = 1.0, gradient_checkpointing: bool = False) -> dict:
    """Bytes (and GiB) per component for ``batch`` x ``seq_len`` tokens a micro-batch."""
    from .config import DEFAULTS
    cfg = copy.deepcopy(cfg or DEFAULTS)
    cfg["method"] = method
    n = count_params(model_dir, cfg)
    total, trainable, linear = n["total"], n["trainable"], n["linear"]
    if method == "full":
        weights = total * 6
    elif method == "qlora":
        weights = linear * 0.5625 + (total - linear) * 2 + trainable * 4
    else:
        weights = total * 2 + trainable * 4
    grads, optim = trainable * 4, trainable * 8
    tokens = seq_len * batch
    act = activation_bytes(n["config"], tokens, int(tokens * learned_share),
                           lora_dropout=method in ("lora", "qlora") and cfg["lora"]["dropout"] > 0,
                           checkpointing=gradient_checkpointing)
    parts = {"weights": weights, "gradients": grads, "optimizer": optim,
             "activations": act["layers"] + act["logits"]}
    subtotal = sum(parts.values())
    parts["overhead"] = GIB + 0.05 * subtotal
    out = {"model": str(model_dir), "method": method, "params": total, "trainable_params": trainable,
           "trainable_share": trainable / total, "seq_len": seq_len, "batch": batch,
           "gradient_checkpointing": gradient_checkpointing,
           "bytes": {k: int(v) for k, v in parts.items()}}
    out["gib"] = {k: v / GIB for k, v in parts.items()}
    out["total_gib"] = sum(parts.values()) / GIB
    return out


def data_advice(n_samples: int) -> str:
    if n_samples < 10_000:
        return (f"{n_samples:,} samples: below ~10k, start from a chat (instruct) model and adapt it; "
                "a base model rarely learns to converse from this little data")
    return (f"{n_samples:,} samples: above ~10k, starting from a base model is an option "
            "(more room to shape the style), a chat model still converges faster")
