"""trainplug sft on 2 GPUs (torchrun, NCCL) against 1 GPU, the same plan and global batch.

The 1.07B Llama shape of bench/sft_throughput.py (random init, SmolLM2's tokenizer and chat
template), LoRA r=16 on all linear layers, bf16, curated alpaca_zh, best-fit packing into
16,384-token micro-batches, 2 micro-batches per optimizer step (`grad_accum: 2`, counted over all
processes: 1 GPU runs both in turn, 2 GPUs one each), so both runs take the very same steps.
LoRA dropout is 0 here: dropout draws from each process's own random stream, so with it the two
runs would differ by design, not by arithmetic.

Runs, each a real `trainplug sft` command line:
  one      1 GPU (CUDA_VISIBLE_DEVICES=0)
  two      `torchrun --nproc-per-node 2`
  two->1   a copy of `two` that lost every checkpoint after step SAVE, resumed on 1 GPU
  one->2   a copy of `one` that lost every checkpoint after step SAVE, resumed on 2 GPUs

Shown: per-step loss of two vs one (max relative difference), real tokens/s (steps after the
warm-up, the logged `tokens` over `step_seconds` on rank 0, which waits for the all-reduce),
the scaling ratio, the checkpoints on disk (one folder per saved step, no temp folders, no
duplicate metric rows), and the resumed runs' losses against the uninterrupted ones.

    # here (CPU): curate alpaca_zh into .device/ddp/ (gitignored, carried to the GPU machine)
    python bench/sft_ddp.py prepare
    # on nvidia-h200-x2 (device tool), with the wheels of .whl installed, in one call:
    python bench/sft_ddp.py run --out $OUT
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / ".device" / "ddp"
WORK = Path(os.environ.get("DDP_WORK", "/tmp/ddp"))
# NVLink multicast stays off (the device tool's KINDS.md): set here too, since torchrun's children
# inherit this environment.
SAFE_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def prepare(alpaca: str) -> None:
    out = DATA / "alpaca_zh"
    subprocess.run([sys.executable, "-m", "curate.cli", "run", "--input", alpaca, "--skip", "dedup", "--out", str(out)],
                   check=True, cwd=ROOT)
    shutil.copytree(ROOT / ".device" / "sft_bench" / "tokenizer", DATA / "tokenizer", dirs_exist_ok=True)
    print(f"curated set in {out}; tokenizer in {DATA / 'tokenizer'}")


def make_model(dst: Path) -> None:
    """The 1.07B Llama shape, random init (seed 0), bf16 safetensors, with the bench tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sft_throughput import SHAPES   # bench/ is sys.path[0] when run as a script
    if (dst / "model.safetensors").exists():
        return
    cfg = LlamaConfig(vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192, rope_theta=100000.0,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, **SHAPES["llama-1.07b"])
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(dst, safe_serialization=True)
    for f in (DATA / "tokenizer").iterdir():
        shutil.copy(f, dst / f.name)


def sft(name: str, cfg: dict, gpus: int, *extra: str) -> dict:
    y = WORK / f"{name}.yaml"
    y.write_text(json.dumps(cfg), encoding="utf-8")
    env = {**os.environ, **SAFE_ENV, "PYTHONUNBUFFERED": "1"}
    if gpus == 1:
        cmd = [sys.executable, "-m", "trainplug.cli", "sft", str(y), *extra]
        env["CUDA_VISIBLE_DEVICES"] = "0"
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(gpus),
               "-m", "trainplug.cli", "sft", str(y), *extra]
    t = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t
    if p.returncode:
        raise SystemExit(f"{name} failed after {wall:.0f}s:\n{p.stdout[-2000:]}\n{p.stderr[-5000:]}")
    print(f"== {name}: {gpus} GPU(s), {wall:.0f}s wall", flush=True)
    return {"wall_s": round(wall, 1), "command": " ".join(cmd[1:])}


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def speed(rows: list[dict], warm: int) -> float:
    timed = [r for r in rows if r["step"] > warm]
    return sum(r["tokens"] for r in timed) / sum(r["step_seconds"] for r in timed)


def max_rel(a: list[dict], b: list[dict], first: int = 1) -> float:
    la = {r["step"]: r["loss"] for r in a}
    lb = {r["step"]: r["loss"] for r in b}
    common = [s for s in la if s in lb and s >= first]
    assert common, "no common steps"
    return max(abs(la[s] - lb[s]) / abs(la[s]) for s in common)


def ckpt_listing(out: Path) -> dict:
    d = out / "checkpoints"
    names = sorted(p.name for p in d.iterdir())
    states = {n: json.loads((d / n / "state.json").read_text()).get("world_size") for n in names if (d / n / "state.json").exists()}
    return {"entries": names, "world_size": states, "temp_left": [n for n in names if n.startswith(".")]}


def drop_after(out: Path, step: int) -> None:
    for p in (out / "checkpoints").iterdir():
        if p.name.startswith("step-") and int(p.name[5:]) > step:
            shutil.rmtree(p)


def run(args) -> None:
    import torch
    res_path = Path(args.out) / "sft_ddp.json"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    model = WORK / "llama-1.07b"
    make_model(model)
    base = {"data": str(DATA / "alpaca_zh"), "model": str(model), "max_seq_len": 1024, "batch_tokens": 16384,
            "grad_accum": 2, "max_steps": args.steps, "save_every": args.save, "keep_checkpoints": 10,
            "lr": 2e-4, "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
            "eval_fraction": 0.0, "eval_at_start": False, "tensorboard": False, "progress": False, "seed": 0}
    res = {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(), "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M"), "config": base, "warm": args.warm, "runs": {}}

    def save() -> None:
        res_path.write_text(json.dumps(res, indent=1))

    for name, gpus in (("one", 1), ("two", 2)):
        out = WORK / name
        shutil.rmtree(out, ignore_errors=True)
        res["runs"][name] = sft(name, {**base, "out": str(out)}, gpus)
        rows = rows_of(out)
        man = json.loads((out / "manifest.json").read_text())
        res["runs"][name].update(steps=len(rows), step_numbers_unique=len({r["step"] for r in rows}) == len(rows),
                                 tokens_per_s=round(speed(rows, args.warm)), world_size=man.get("world_size"),
                                 peak_gpu_mem_gb=man.get("peak_gpu_mem_gb"), losses=[r["loss"] for r in rows],
                                 step_seconds=[round(r["step_seconds"], 4) for r in rows],
                                 checkpoints=ckpt_listing(out))
        save()
    one, two = rows_of(WORK / "one"), rows_of(WORK / "two")
    res["two_vs_one"] = {"max_rel_loss_diff": max_rel(one, two),
                         "same_tokens_per_step": [r["tokens"] for r in one] == [r["tokens"] for r in two],
                         "scaling": round(res["runs"]["two"]["tokens_per_s"] / res["runs"]["one"]["tokens_per_s"], 3)}
    save()
    print(json.dumps(res["two_vs_one"]), flush=True)
    for name, src, gpus in (("two_to_one", "two", 1), ("one_to_two", "one", 2)) if args.resume else ():
        out = WORK / name
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(WORK / src, out)
        drop_after(out, args.save)
        cfg = {**base, "out": str(out)}
        res["runs"][name] = sft(name, cfg, gpus, "--resume")
        rows = rows_of(out)
        resumed = [e for e in map(json.loads, (out / "events.jsonl").read_text().splitlines()) if e["event"] == "resumed"]
        res["runs"][name].update(steps=len(rows), resumed=resumed[-1] if resumed else None,
                                 max_rel_loss_diff_vs_uninterrupted=max_rel(rows_of(WORK / src), rows, first=args.save + 1),
                                 max_rel_loss_diff_vs_one=max_rel(one, rows, first=args.save + 1),
                                 checkpoints=ckpt_listing(out))
        save()
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "losses"} for k, v in res["runs"].items()}, indent=1))
    print(json.dumps(res["two_vs_one"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--alpaca", default=str(ROOT.parent / "shared" / "data" / "alpaca_zh"))
    p = sub.add_parser("run")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--save", type=int, default=20)
    p.add_argument("--warm", type=int, default=10)
    p.add_argument("--no-resume", dest="resume", action="store_false", help="skip the two resumed runs")
    p.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    a = ap.parse_args()
    prepare(a.alpaca) if a.cmd == "prepare" else run(a)


if __name__ == "__main__":
    main()
