"""Attention over packed rows without attention across examples.

* GPU: ``varlen`` -- PyTorch's own flash-attention varlen kernel (``torch.nn.attention.varlen``,
  torch >= 2.10), registered with transformers as an attention implementation. It reads the
  examples' boundaries (``cu_seq_lens_q``) that the recipe passes down through the model's
  forward kwargs, so the cost is the sum of the examples' squares, not the row's.
* ``flash_attention_2`` where the flash-attn package is installed (transformers reads the
  boundaries from the restarting position ids).
* CPU (and the fallback): ``sdpa``; transformers sees the restarting position ids with no
  attention mask and builds a block-diagonal causal mask.
"""
from __future__ import annotations

import importlib.util
import inspect

import torch

NAME = "trainplug_varlen"


def varlen_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return True


def _varlen_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers attention interface: query [1, H, T, D], key/value [1, Hkv, T, D] -> ([1, T, H, D], None)."""
    from torch.nn.attention.varlen import varlen_attn
    cu, max_len = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
    if cu is None:   # no boundaries given (e.g. generation): one sequence
        cu = torch.tensor([0, query.shape[2]], dtype=torch.int32, device=query.device)
        max_len = query.shape[2]
    # (no int()/bool() on max_len: under torch.compile it is symbolic, and a cast would recompile per value)
    if query.shape[0] != 1:
        raise ValueError("varlen attention takes packed rows (batch size 1)")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))   # [T, H, D]
    extra = {}
    params = _varlen_params()
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if "is_causal" in params:
        extra["is_causal"] = True
    else:
        extra["window_size"] = (-1, 0)
    if "scale" in params and scaling is not None:
        extra["scale"] = scaling
    out = varlen_attn(q, k, v, cu, cu, max_len, max_len, **extra)
    return out.unsqueeze(0), None


_PARAMS: set | None = None


def _varlen_params() -> set:
    global _PARAMS
    if _PARAMS is None:
        from torch.nn.attention.varlen import varlen_attn
        _PARAMS = set(inspect.signature(varlen_attn).parameters)
    return _PARAMS


def _no_mask(*args, **kwargs):
    return None   # boundaries travel as cu_seq_lens; nothing to build


def register() -> None:
    _varlen_params()   # read the signature now, outside any torch.compile trace
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    AttentionInterface.register(NAME, _varlen_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, _no_mask)


def choose(requested: str, device: torch.device, packing: bool) -> str:
    """The transformers attention implementation to load the model with."""
    if requested == "varlen" or (requested == "auto" and device.type == "cuda" and packing and varlen_available()):
        if not varlen_available():
            raise RuntimeError("attention: varlen needs a CUDA GPU and torch >= 2.10 (torch.nn.attention.varlen)")
        register()
        return NAME
    if requested == "auto":
        if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
        return "sdpa"
    return requested


def forward_kwargs(impl: str, batch) -> dict:
    """Extra model-forward kwargs the attention implementation reads (the packed boundaries)."""
    if impl == NAME and batch.cu_seqlens is not None:
        return {"cu_seq_lens_q": batch.cu_seqlens, "cu_seq_lens_k": batch.cu_seqlens,
                "max_length_q": batch.max_len, "max_length_k": batch.max_len}
    return {}
