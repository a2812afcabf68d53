"""trainplug sft throughput vs the stock recipe (transformers Trainer + peft), side by side.

Same data (alpaca_zh under the SmolLM2 tokenizer and chat template, loss on the replies), same
data order (steps of the same 16 examples), LoRA r=16 on all linear layers, bf16, AdamW, cosine
schedule; random-init models of two shapes (SmolLM2-135M and a 1.07B Llama: Llama-3.2-1B's
layers with SmolLM2's 49,152-token vocabulary, tied embeddings). Each (shape, recipe) runs in its
own process so peak memory is its own.

* stock      Trainer(per_device_train_batch_size=16, bf16=True), DataCollatorForSeq2Seq padding
             to the longest in the batch, fp32 weights under autocast, sdpa attention
* trainplug  the recipe (trainplug.recipe.train): the same 16 examples packed into one row,
             flash varlen attention, bf16 frozen weights, logits only for learned tokens
* trainplug-12k / -16k  the recipe with its own batching: best-fit packing into 12,288- or
             16,384-token micro-batches (another data order: throughput and memory only)

Real tokens/s counts non-pad tokens over the timed steps (after warm-up). MFU = 4 x params x
tokens/s / 989 TFLOP/s (H100 bf16 dense; forward + activation-gradient backward, the frozen
weights need no weight gradient), the convention of ../shared/GUIDE.md's anchor figures.

    # here (CPU): tokenize once into .device/sft_bench/ (gitignored, carried to the GPU)
    python bench/sft_throughput.py prepare --alpaca ../shared/data/alpaca_zh
    # on the GPU machine (device tool), everything in one call:
    python bench/sft_throughput.py run --steps 40 --out $OUT
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / ".device" / "sft_bench"
PEAK_TFLOPS = 989.4
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16),   # a CPU smoke test of this script
    "llama-1.07b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                        num_key_value_heads=8, head_dim=64),
}
DEVICE = os.environ.get("BENCH_DEVICE", "cuda")
GROUP = 16          # examples per step (the stock recipe's batch)
MAX_LEN = 1024
LR = 2e-4


# -- prepare (CPU, here) --------------------------------------------------------------------------

def prepare(alpaca: str, max_len: int = MAX_LEN) -> None:
    import numpy as np

    from curate.reading import SourceSpec, expand_inputs, read_source
    from trainplug.config import load_config
    from trainplug.data import DataError, encode_records, load_tokenizer
    from trainplug.models import default_model_dir
    tok = load_tokenizer(default_model_dir())
    cfg = load_config(None, overrides={"data": "x", "max_seq_len": max_len}, check_paths=False)
    recs = [r for f in expand_inputs([alpaca]) for r, _ in read_source(SourceSpec(f)) if r]
    exs = []
    for r in recs:
        try:
            exs += encode_records([r], tok, cfg)
        except DataError:
            pass
    DATA.mkdir(parents=True, exist_ok=True)
    lens = np.array([len(e) for e in exs], dtype=np.int64)
    np.savez_compressed(DATA / "alpaca_zh.npz", ids=np.concatenate([e.ids for e in exs]).astype(np.uint16),
                        mask=np.concatenate([e.mask for e in exs]), lens=lens)
    tok.save_pretrained(DATA / "tokenizer")
    print(f"{len(recs)} records -> {len(exs)} examples, mean {lens.mean():.0f} tokens "
          f"(p50 {np.median(lens):.0f}, max {lens.max()}), learned share "
          f"{sum(e.n_trainable for e in exs) / lens.sum():.2f}; saved to {DATA}")


# -- one measurement (GPU, its own process) ------------------------------------------------------------

def load_examples():
    import numpy as np

    from trainplug.data import Example
    with np.load(DATA / "alpaca_zh.npz") as d:   # each d[key] decompresses again: read once
        ids, mask, lens = d["ids"].astype(np.int32), d["mask"], d["lens"]
    out, pos = [], 0
    for k, n in enumerate(lens):
        out.append(Example(ids[pos:pos + n], mask[pos:pos + n], f"alpaca_zh:{k}"))
        pos += n
    return out


def build_model(shape: str, dtype, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=49152, tie_word_embeddings=True, max_position_embeddings=8192, rope_theta=100000.0,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2, **SHAPES[shape])
    torch.manual_seed(seed)
    with torch.device(DEVICE):
        model = LlamaForCausalLM(cfg)
    return model.to(dtype)


def run_stock(shape: str, examples, groups, warm: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments
    tok = AutoTokenizer.from_pretrained(str(DATA / "tokenizer"))
    model = build_model(shape, torch.float32)
    torch.manual_seed(1)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    rows = []
    for g in groups:
        for i in g:
            e = examples[i]
            ids = e.ids.tolist()
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                         "labels": [t if m else -100 for t, m in zip(ids, e.mask.tolist())]})
    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (warm, len(groups)):
                if DEVICE == "cuda":
                    torch.cuda.synchronize()
                marks[state.global_step] = time.perf_counter()

    import inspect
    known = inspect.signature(TrainingArguments).parameters
    # transformers 5 folds warmup_ratio into a fractional warmup_steps; older ones have both.
    warm_kw = {"warmup_ratio": 0.03} if "warmup_ratio" in known else {"warmup_steps": 0.03}
    order_kw = {"train_sampling_strategy": "sequential"} if "train_sampling_strategy" in known else {}
    args = TrainingArguments(output_dir="/tmp/stock", per_device_train_batch_size=GROUP, bf16=DEVICE == "cuda",
                             learning_rate=LR, lr_scheduler_type="cosine", max_steps=len(groups), logging_steps=1,
                             save_strategy="no", report_to=[], dataloader_drop_last=True, max_grad_norm=1.0,
                             weight_decay=0.0, seed=0, disable_tqdm=True, **warm_kw, **order_kw)
    if not order_kw:   # older transformers: keep the dataset's order through the sampler
        import torch.utils.data as tud
        Trainer._get_train_sampler = lambda self, *a: tud.SequentialSampler(self.train_dataset)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[Clock()],
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    timed = sum(len(examples[i]) for g in groups[warm:] for i in g)
    padded = sum(GROUP * max(len(examples[i]) for i in g) for g in groups[warm:])
    return {"losses": losses, "tokens_per_s": timed / (marks[len(groups)] - marks[warm]),
            "padded_share": 1 - timed / padded,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0}


def run_trainplug(shape: str, examples, groups, warm: int, budget: int | None) -> dict:
    """budget None: the stock recipe's batches (same 16 examples a step); else best-fit packing."""
    own_batching = budget is not None
    import shutil

    import torch

    from trainplug import attention, dist
    from trainplug.config import load_config
    from trainplug.data import Dataset
    from trainplug.packing import Plan
    from trainplug.recipe import Setup, train, wrap_model
    from transformers import AutoTokenizer
    out = Path("/tmp/trainplug-bench")
    shutil.rmtree(out, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(DATA / "tokenizer"))
    cfg = load_config(None, check_paths=False, overrides={
        "data": "alpaca_zh", "max_seq_len": MAX_LEN, "lr": LR, "out": str(out), "progress": False,
        "tensorboard": False, "save_every": 10**6, "eval_at_start": False, "eval_fraction": 0.0,
        "guard": {"enabled": False}, "batch_tokens": budget or GROUP * MAX_LEN,
        "max_steps": len(groups) if own_batching else None})
    world = dist.init()
    impl = attention.choose("auto", torch.device(DEVICE), True)
    model = build_model(shape, torch.float32).to(torch.bfloat16)
    model.set_attn_implementation(impl) if hasattr(model, "set_attn_implementation") else setattr(model.config, "_attn_implementation", impl)
    torch.manual_seed(1)
    model = wrap_model(cfg, model, [], world)
    if own_batching:
        ds = Dataset(train=[examples[i] for i in range(len(examples))], eval=[])
        plan = Plan([len(e) for e in ds.train], ["sft"] * len(ds.train), len(ds.train), budget=budget, grad_accum=1,
                    epochs=1, max_steps=len(groups), seed=0)
    else:
        ds = Dataset(train=examples, eval=[])
        plan = Plan.from_steps([[list(g)] for g in groups], [len(e) for e in examples])
    s = Setup(cfg, world, tok, ds, plan, model, Path("random-init"), impl, torch.bfloat16 if DEVICE == "cuda" else None, [])
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    summary = train(s)
    from torch._dynamo.utils import counters
    compiled = {"graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
                "compile": cfg["compile"]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = rows[warm:]
    return {"losses": [r["loss"] for r in rows], "attention": impl, **compiled,
            "tokens_per_s": sum(r["tokens"] for r in timed) / sum(r["step_seconds"] for r in timed),
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0,
            "pack_fill": summary["pack_fill"]}


def varlen_check(shape: str, examples, group) -> float:
    """Per-example loss through varlen packing vs one example per row (sdpa): max relative difference."""
    import torch

    from trainplug import attention
    from trainplug.packing import collate
    from trainplug.recipe import loss_sum
    impl = attention.choose("auto", torch.device("cuda"), True)
    model = build_model(shape, torch.bfloat16).eval()
    diffs = []
    with torch.no_grad():
        model.set_attn_implementation(impl)
        packed = [loss_sum(model, collate(examples, [i]).to("cuda"), impl, torch.bfloat16).item() for i in group[:4]]
        model.set_attn_implementation("sdpa")
        alone = [loss_sum(model, collate(examples, [i], packed=False).to("cuda"), "sdpa", torch.bfloat16).item() for i in group[:4]]
        model.set_attn_implementation(impl)
        b = collate(examples, list(group[:4])).to("cuda")
        together = loss_sum(model, b, impl, torch.bfloat16).item()
    diffs = [abs(a - b) / abs(b) for a, b in zip(packed, alone)] + [abs(together - sum(alone)) / sum(alone)]
    return max(diffs)


def budget(recipe: str) -> int | None:
    """"trainplug" -> None (stock batches); "trainplug-12k" -> 12,288-token best-fit micro-batches."""
    return int(recipe.split("-")[1].rstrip("k")) * 1024 if "-" in recipe else None


def one(args) -> None:
    import random

    import torch
    examples = load_examples()
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    groups = [order[k * GROUP:(k + 1) * GROUP] for k in range(args.steps)]
    if args.recipe == "stock":
        res = run_stock(args.shape, examples, groups, args.warm)
    elif args.recipe == "check":
        res = {"varlen_vs_sdpa_max_rel_diff": varlen_check(args.shape, examples, groups[0])}
    elif os.environ.get("BENCH_PROFILE"):   # where the time goes (a development aid, not a figure)
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            res = run_trainplug(args.shape, examples, groups, args.warm, budget(args.recipe))
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=int(os.environ["BENCH_PROFILE"]),
                                        max_name_column_width=50), file=sys.stderr)
    else:
        res = run_trainplug(args.shape, examples, groups, args.warm, budget(args.recipe))
    from transformers import LlamaConfig, LlamaForCausalLM
    with torch.device("meta"):
        n_params = sum(p.numel() for p in LlamaForCausalLM(LlamaConfig(vocab_size=49152, tie_word_embeddings=True,
                                                                       **SHAPES[args.shape])).parameters())
    res.update(shape=args.shape, recipe=args.recipe, steps=args.steps, params=n_params,
               device=torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
               torch=torch.__version__)
    if "tokens_per_s" in res:
        res["mfu"] = 4 * n_params * res["tokens_per_s"] / (PEAK_TFLOPS * 1e12)
    Path(args.result).write_text(json.dumps(res))


def run_all(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    plan = [(s, r) for s in args.shapes.split(",") for r in args.recipes.split(",")]
    for shape, recipe in plan:
        f = Path(tempfile.gettempdir()) / f"sft_bench__{shape}__{recipe}.json"   # $OUT takes few files
        t = time.time()
        p = subprocess.run([sys.executable, __file__, "one", "--shape", shape, "--recipe", recipe, "--steps", str(args.steps),
                            "--warm", str(args.warm), "--result", str(f)], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"== {shape} {recipe} failed ({time.time() - t:.0f}s)\n{p.stderr[-3000:]}", flush=True)
            continue
        if os.environ.get("BENCH_PROFILE"):
            lines = p.stderr.splitlines()
            head = max((i for i, line in enumerate(lines) if line.lstrip().startswith("Name")), default=0)
            print("\n".join(line[:160] for line in lines[head:] if line.strip() and not line.startswith("---")))
        res = json.loads(f.read_text())
        results.append(res)
        print(f"== {shape} {recipe} ({time.time() - t:.0f}s): " + json.dumps({k: v for k, v in res.items() if k != "losses"}), flush=True)
    (out / "sft_throughput.json").write_text(json.dumps(results, indent=1))
    print(table(results))


def table(results: list[dict]) -> str:
    lines = ["| shape | recipe | real tokens/s | x stock | MFU | peak GiB | loss step 1 / last | max loss diff vs stock |",
             "|---|---|---:|---:|---:|---:|---|---:|"]
    stock = {r["shape"]: r for r in results if r["recipe"] == "stock"}
    for r in results:
        if "tokens_per_s" not in r:
            lines.append(f"| {r['shape']} | {r['recipe']} | {json.dumps({k: v for k, v in r.items() if k.startswith('varlen')})} |||||")
            continue
        s = stock.get(r["shape"])
        ratio = r["tokens_per_s"] / s["tokens_per_s"] if s else float("nan")
        same_order = r["recipe"] in ("stock", "trainplug") and s
        diff = max(abs(a - b) / b for a, b in zip(r["losses"], s["losses"])) if same_order else float("nan")
        lines.append(f"| {r['shape']} | {r['recipe']} | {r['tokens_per_s']:,.0f} | {ratio:.2f} | {100 * r['mfu']:.1f}% | "
                     f"{r['peak_gib']:.1f} | {r['losses'][0]:.3f} / {r['losses'][-1]:.3f} | "
                     + (f"{100 * diff:.2f}%" if same_order and r["recipe"] != "stock" else "-") + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--alpaca", default=str(ROOT.parent / "shared" / "data" / "alpaca_zh"))
    p = sub.add_parser("run")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warm", type=int, default=5)
    p.add_argument("--shapes", default="smollm2-135m,llama-1.07b")
    p.add_argument("--recipes", default="check,stock,trainplug,trainplug-12k,trainplug-16k")
    p.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
    p = sub.add_parser("one")
    p.add_argument("--shape", required=True)
    p.add_argument("--recipe", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warm", type=int, required=True)
    p.add_argument("--result", required=True)
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args.alpaca)
    elif args.cmd == "run":
        run_all(args)
    else:
        one(args)


if __name__ == "__main__":
    main()
