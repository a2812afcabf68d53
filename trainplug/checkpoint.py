"""Checkpoints under ``OUT/checkpoints/step-NNNNNNN/``, each written whole or not at all.

A checkpoint holds what an exact resume needs: the trainable weights (safetensors), the optimizer
and scheduler states, the RNG states of every process, the data position and run state (JSON),
and the resolved config. It is written into a temporary folder and renamed into place, so a kill
at any moment leaves either the previous checkpoints or the new one, never half of one. Tensors
load with ``torch.load(weights_only=True)`` (no pickled code runs).
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

PREFIX = "step-"


def ckpt_dir(out: Path) -> Path:
    return Path(out) / "checkpoints"


def list_checkpoints(out: Path) -> list[Path]:
    d = ckpt_dir(out)
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def rng_state() -> dict:
    """This process's RNG states (torch CPU and CUDA as tensors; Python and numpy as JSON-able lists).
    CUDA: only this process's own device (under torchrun every process sees every GPU; touching
    the others would open a context on each, and a resume on fewer GPUs could not set them)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            "python": [list(random.getstate()[1]), random.getstate()[2]],
            "numpy": [np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if st.get("cuda") is not None and torch.cuda.is_available():
        cuda = st["cuda"]
        if cuda.dim() == 2:   # older checkpoints held every visible device's state
            cuda = cuda[min(torch.cuda.current_device(), len(cuda) - 1)]
        torch.cuda.set_rng_state(cuda)
    random.setstate((3, tuple(st["python"][0]), st["python"][1]))
    np.random.set_state(("MT19937", np.asarray(st["numpy"][0], dtype=np.uint32), *st["numpy"][1:]))


def save(out: Path, step: int, *, weights: dict[str, torch.Tensor], optimizer: dict, scheduler: dict,
         rng: list[dict], state: dict, config: dict, keep: int, protect: int | None = None) -> Path:
    """Write checkpoint ``step`` atomically; keep the newest ``keep`` (and ``protect``, the rollback target)."""
    final = ckpt_dir(out) / f"{PREFIX}{step:07d}"
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # safetensors refuses tensors that share memory (tied weights): store each once, contiguous.
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}, str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer, "scheduler": scheduler}, tmp / "optim.pt")
    torch.save({"rng": rng}, tmp / "rng.pt")
    (tmp / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    (tmp / "state.json").write_text(json.dumps(state, indent=2, default=str), encoding="utf-8")
    if final.exists():   # a rolled-back run saves the same step again
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(out)[:-keep]:
        if protect is None or int(old.name[len(PREFIX):]) != protect:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: Path, device: torch.device | str = "cpu") -> dict:
    path = Path(path)
    optim = torch.load(path / "optim.pt", map_location=device, weights_only=True)
    return {"weights": load_file(str(path / "trainable.safetensors"), device=str(device)),
            "optimizer": optim["optimizer"], "scheduler": optim["scheduler"],
            "rng": torch.load(path / "rng.pt", map_location="cpu", weights_only=True)["rng"],
            "state": json.loads((path / "state.json").read_text()),
            "config": json.loads((path / "config.json").read_text())}
