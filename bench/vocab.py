"""Vocabulary expansion (issue 4): what `curate vocab` buys on the real corpora and the real model,
against the anchor (the stock SmolLM2-135M-Instruct tokenizer and model) in the same run.

1. tokenizer  `expand_vocab` on medical_dialogue (GB18030 CSV, user=ask, assistant=answer) +
              alpaca_zh, SIZE tokens at most; tokens per character on the held-out medical records
              (never trained on), before and after.
2. round trip decode(encode(x)) == x on STRINGS seeded mixed strings (Chinese, English, code,
              emoji, kana, fullwidth, rare CJK, whitespace, special tokens), expanded vs base.
3. unchanged  every alpaca_en record and every Python file of this repo and of click (code):
              ids identical to the base tokenizer's (texts with a Chinese character left out and
              counted).
4. decoding   same model weights (SmolLM2-135M-Instruct, fp32, CPU), same prompts (held-out
              medical questions, "问：...\n答："), greedy, per token one KV-cached forward + argmax:
              a. step: the cost of one decoding step for each model (the expanded LM head is
                 larger), alternating step by step; times the held-out tokens-per-character ratio
                 it gives the Chinese characters per second either model decodes the same text at;
              b. forced: the time to emit the held-out doctor's answer token by token (the
                 reference token fed back): the same Chinese text under each tokenizer, measured;
              c. free: greedy generation of GEN_TOKENS new tokens, Chinese characters of output
                 per second. The new rows start untrained (subword-mean init: an untrained
                 expanded model still prefers the old pieces), so the expanded model first gets a
                 short embeddings-only warm-up (trainplug.embeddings.warmup_new_embeddings, new rows
                 only, transformer frozen; --warm-base gives the base the same on its rows). A 135M
                 English model's Chinese is poor either way: (c) counts characters, not quality.
              Runs alternate base/expanded per prompt so load drift on a shared machine cancels.

    .venv/bin/python bench/vocab.py                # the recorded run (results in bench/out/vocab/)
    .venv/bin/python bench/vocab.py --quick        # a small smoke run of every stage
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
MEDICAL = SHARED / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"


def stage_tokenizer(args, out: Path) -> dict:
    from curate.vocab import expand_vocab
    from curate.vocab.corpus import read_corpus
    from curate.vocab.report import tokens_per_char
    from transformers import AutoTokenizer
    t = time.time()
    report = expand_vocab([str(MEDICAL), str(SHARED / "alpaca_zh")], out / "tok", size=args.size,
                          mapping=["user=ask,assistant=answer", "auto"], heldout=0.05, seed=0,
                          progress=not args.no_progress, log=lambda m: print("  " + m, flush=True))
    # The medical records held out by the same split (same path:id keys and seed) as the expansion.
    med = read_corpus([str(MEDICAL)], "user=ask,assistant=answer", heldout=0.05, seed=0).heldout
    base = AutoTokenizer.from_pretrained(report["base"]["path"])
    new = AutoTokenizer.from_pretrained(str(out / "tok"))
    before, after = tokens_per_char(base, med), tokens_per_char(new, med)
    return {"added": report["added"], "size": args.size, "build_s": round(time.time() - t, 1),
            "heldout_medical": {"before": before, "after": after,
                                "ratio": round(after["tokens_per_char"] / before["tokens_per_char"], 4)},
            "heldout_all": report["heldout"], "terms": report["terms"], "skipped": report["skipped"],
            "unreachable": len(report["unreachable"]), "top_added": report["top_added"][:20],
            "base_path": report["base"]["path"]}


def mixed_strings(n: int, seed: int) -> list[str]:
    from curate.vocab.corpus import read_corpus
    rng = random.Random(seed)
    med = read_corpus([str(MEDICAL)], "user=ask,assistant=answer", heldout=0.05, seed=0).heldout
    zh = read_corpus([str(SHARED / "alpaca_zh" / "alpaca_zh_12345-15323.json")], heldout=0.0).train
    en = [r["instruction"] + " " + r["output"] for r in json.loads((SHARED / "alpaca_en" / "alpaca_en_06382-09407.json").read_text())]
    code = [line for p in sorted(ROOT.glob("*/*.py")) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    rare = "".join(chr(c) for c in (0x3400, 0x4DB5, 0x9FA5, 0x9FEF, 0xF900, 0x20000, 0x2A6D6, 0x30000, 0x3007, 0x3005))
    pools = [
        lambda: rng.choice(med)[rng.randint(0, 50):][:rng.randint(1, 120)],
        lambda: rng.choice(zh)[:rng.randint(1, 120)],
        lambda: rng.choice(en)[:rng.randint(1, 160)],
        lambda: "\n".join(rng.sample(code, rng.randint(1, 4))),
        lambda: "".join(rng.choice("😀👍🏽🇨🇳🤖🧠❤️‍🔥") for _ in range(rng.randint(1, 6))),
        lambda: "".join(rng.choice("ぁあいアイウｱｲ한국어éüßΩжЖ") for _ in range(rng.randint(1, 10))),
        lambda: "".join(rng.choice("１２３ＡＢＣ（）！？：；，。、“”—…￥℃") for _ in range(rng.randint(1, 10))),
        lambda: "".join(rng.choice(rare) for _ in range(rng.randint(1, 5))),
        lambda: rng.choice([" ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "<|im_start|>", "<|im_end|>", "\ufffd"]),
    ]
    return ["".join(rng.choice(pools)() for _ in range(rng.randint(1, 5))) for _ in range(n)]


def stage_round_trip(base, new, strings: list[str]) -> dict:
    def failures(tok):
        ids = tok(strings, add_special_tokens=False)["input_ids"]
        return [s for s, i in zip(strings, ids) if tok.decode(i) != s], sum(map(len, ids))
    new_bad, new_tokens = failures(new)
    base_bad, base_tokens = failures(base)
    return {"strings": len(strings), "chars": sum(map(len, strings)), "failures_expanded": len(new_bad),
            "failures_base": len(base_bad), "examples_expanded": new_bad[:3], "tokens_base": base_tokens,
            "tokens_expanded": new_tokens}


def stage_unchanged(base, new) -> dict:
    import click as click_pkg
    from curate.vocab.corpus import is_cjk
    english = [r["instruction"] + "\n" + r.get("input", "") + "\n" + r["output"]
               for f in sorted((SHARED / "alpaca_en").glob("*.json")) for r in json.loads(f.read_text())]
    files = [p for d in ("curate", "trainplug", "evalkit", "bench", "tests") for p in sorted((ROOT / d).rglob("*.py"))]
    files += sorted(Path(click_pkg.__file__).parent.glob("*.py"))
    code = [p.read_text(encoding="utf-8") for p in files]
    out = {}
    for name, texts in (("english", english), ("code", code)):
        plain = [t for t in texts if not any(map(is_cjk, t))]
        b = base(plain, add_special_tokens=False)["input_ids"]
        n = new(plain, add_special_tokens=False)["input_ids"]
        out[name] = {"texts": len(plain), "with_chinese_left_out": len(texts) - len(plain),
                     "tokens": sum(map(len, b)), "changed": sum(x != y for x, y in zip(b, n))}
    return out


def stage_plain_add_tokens(base_dir: str, tok_dir: Path, base, new, strings: list[str], repeats: int = 3) -> dict:
    """The recipe a user tries first: ``tokenizer.add_tokens(<the same new pieces>)`` on the base
    tokenizer (added tokens are matched in the text before the BPE runs).  Same held-out medical
    text, same 10k strings, same English/code: tokens per character, encode time, round trip."""
    from transformers import AutoTokenizer

    from curate.vocab.corpus import read_corpus
    from curate.vocab.report import tokens_per_char
    report = json.loads((tok_dir / "vocab_report.json").read_text(encoding="utf-8"))
    pieces = [t["token"] for t in report["new_tokens"] if "\\" not in t["token"]]   # whole characters only
    plain = AutoTokenizer.from_pretrained(base_dir)
    t = time.perf_counter()
    added = plain.add_tokens(pieces)
    add_s = time.perf_counter() - t
    med = read_corpus([str(MEDICAL)], "user=ask,assistant=answer", heldout=0.05, seed=0).heldout
    out = {"pieces": len(pieces), "added": added, "add_tokens_s": round(add_s, 2), "tokenizers": {}}
    for name, tok in (("base", base), ("curate_vocab", new), ("add_tokens", plain)):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            tok(med, add_special_tokens=False)
            times.append(time.perf_counter() - t)
        ids = tok(strings, add_special_tokens=False)["input_ids"]
        out["tokenizers"][name] = {
            "heldout_medical": tokens_per_char(tok, med),
            "encode_heldout_s": round(min(times), 4),
            "encode_chars_per_s": round(sum(map(len, med)) / min(times)),
            "round_trip_failures": sum(tok.decode(i) != s for s, i in zip(strings, ids)),
        }
    out["tokenizers"]["add_tokens"]["unchanged"] = stage_unchanged(base, plain)
    return out


# -- decoding ------------------------------------------------------------------------------------

def _forced(model, prompt_ids, target_ids):
    """Seconds to emit ``target_ids`` after ``prompt_ids``: per token one cached forward + argmax."""
    import torch
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]
        t = time.perf_counter()
        for tok in target_ids:
            logits.argmax(-1)
            out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1]
        return time.perf_counter() - t


def _generate(model, tok, prompt: str, n: int):
    import torch
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        t = time.perf_counter()
        out = model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=tok.pad_token_id or tok.eos_token_id)
        dt = time.perf_counter() - t
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True), dt


def _step_costs(base, expanded, base_ids, new_ids, rounds: int) -> dict:
    """Seconds per decoding step (one cached forward + argmax), the two models alternating step by
    step at the same context length, so load changes on a shared machine hit both alike."""
    import statistics

    import torch
    times = {"base": [], "expanded": []}
    with torch.inference_mode():
        for r in range(rounds):
            for name, model, ids in (("base", base, base_ids), ("expanded", expanded, new_ids))[::1 if r % 2 else -1]:
                out = model(input_ids=torch.tensor([ids[:-1]]), use_cache=True)
                t = time.perf_counter()
                model(input_ids=torch.tensor([ids[-1:]]), past_key_values=out.past_key_values, use_cache=True).logits.argmax(-1)
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"rounds": rounds, "context_tokens": len(base_ids), "median_s": {k: round(v, 4) for k, v in med.items()},
            "tokens_per_s": {k: round(1 / v, 2) for k, v in med.items()},
            "ratio_tokens_per_s": round(med["base"] / med["expanded"], 3)}


def stage_decode(args, base_dir: str, tok_dir: Path, heldout_medical: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.reading import SourceSpec, parse_mapping, read_source
    from curate.vocab.corpus import cjk_count, in_heldout
    from trainplug.embeddings import resize_embeddings, warmup_new_embeddings
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    base_tok, new_tok = AutoTokenizer.from_pretrained(base_dir), AutoTokenizer.from_pretrained(str(tok_dir))
    recs = [r for r, _ in read_source(SourceSpec(str(MEDICAL), mapping=parse_mapping("user=ask,assistant=answer"))) if r]
    held = [r for r in recs if in_heldout(f"{MEDICAL}:{r['id']}", 0.05, 0)]
    train = [r for r in recs if not in_heldout(f"{MEDICAL}:{r['id']}", 0.05, 0)]
    # The model's own chat template (what trainplug sft trains on and a user prompts with); the
    # base answers a Chinese question in Chinese under it.
    def fmt(r):
        return base_tok.apply_chat_template([{"role": "user", "content": r["messages"][0]["content"]}],
                                            add_generation_prompt=True, tokenize=False)
    prompts = [(fmt(r), r["messages"][1]["content"][:args.answer_chars]) for r in held
               if len(r["messages"][1]["content"]) >= args.answer_chars][:args.prompts]
    warm_texts = [fmt(r) + r["messages"][1]["content"] + "<|im_end|>" for r in train[:args.warmup_texts]]

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    expanded = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    new_ids = resize_embeddings(expanded, tok_dir)
    res = {"prompts": len(prompts), "threads": torch.get_num_threads(), "new_rows": len(new_ids),
           "params_base": sum(p.numel() for p in base.parameters()),
           "params_expanded": sum(p.numel() for p in expanded.parameters())}

    # a. cost of one decoding step, and what it implies for the same Chinese text
    ctx = fmt(held[0]) + held[0]["messages"][1]["content"]
    b_ids = base_tok(ctx, add_special_tokens=False)["input_ids"][:args.context]
    n_ids = new_tok(ctx, add_special_tokens=False)["input_ids"][:args.context]
    res["step"] = _step_costs(base, expanded, b_ids, n_ids, args.step_rounds)
    tpc = heldout_medical["before"]["tokens_per_char"] / heldout_medical["after"]["tokens_per_char"]
    res["step"]["implied_ratio_chars_per_s"] = round(res["step"]["ratio_tokens_per_s"] * tpc, 3)

    # b. forced decoding of held-out answers: the time to emit that exact text under each tokenizer
    forced = {"base": [0.0, 0, 0], "expanded": [0.0, 0, 0]}   # seconds, tokens, Chinese chars
    for k, (prompt, answer) in enumerate(prompts):
        order = [("base", base, base_tok), ("expanded", expanded, new_tok)]
        for name, model, tok in (order if k % 2 == 0 else order[::-1]):
            target = tok(answer, add_special_tokens=False)["input_ids"]
            dt = _forced(model, tok(prompt, add_special_tokens=False)["input_ids"], target)
            forced[name][0] += dt
            forced[name][1] += len(target)
            forced[name][2] += cjk_count(answer)
    res["forced"] = {n: {"seconds": round(s, 2), "tokens": t, "chinese_chars": c,
                         "tokens_per_s": round(t / s, 2), "chinese_chars_per_s": round(c / s, 2)}
                     for n, (s, t, c) in forced.items()}
    res["forced"]["ratio_chars_per_s"] = round(res["forced"]["expanded"]["chinese_chars_per_s"]
                                               / res["forced"]["base"]["chinese_chars_per_s"], 3)

    # c. free-running greedy generation; the new rows first get the embeddings-only warm-up
    warm = {}
    models = [("expanded", expanded, new_tok, new_ids)]
    if args.warm_base:   # the same budget for the base, on the rows its tokens of these texts use
        rows = sorted({i for t in warm_texts for i in base_tok(t, add_special_tokens=False)["input_ids"]})
        models.insert(0, ("base", base, base_tok, rows))
    for name, model, tok, rows in models if args.warmup_steps else []:
        t = time.time()
        losses = warmup_new_embeddings(model, tok, warm_texts, rows, steps=args.warmup_steps, lr=args.warmup_lr,
                                       batch_size=args.warmup_batch, seq_len=args.warmup_len, seed=0,
                                       progress=not args.no_progress)
        model.eval()
        warm[name] = {"rows": len(rows), "steps": args.warmup_steps, "batch": args.warmup_batch,
                      "window": args.warmup_len, "lr": args.warmup_lr, "first_loss": round(losses[0], 3),
                      "last5_loss": round(sum(losses[-5:]) / len(losses[-5:]), 3), "seconds": round(time.time() - t, 1)}
    res["warmup"] = warm
    free = {"base": [0.0, 0, 0, 0, 0], "expanded": [0.0, 0, 0, 0, 0]}  # s, chars, Chinese, new-token uses, U+FFFD
    samples = {}
    for k, (prompt, _) in enumerate(prompts):
        order = [("base", base, base_tok), ("expanded", expanded, new_tok)]
        for name, model, tok in (order if k % 2 == 0 else order[::-1]):
            text, dt = _generate(model, tok, prompt, args.gen_tokens)
            f = free[name]
            f[0] += dt
            f[1] += len(text)
            f[2] += cjk_count(text)
            f[4] += text.count("\ufffd")
            if name == "expanded":
                f[3] += sum(i >= len(base_tok) for i in tok(text, add_special_tokens=False)["input_ids"])
            samples.setdefault(name, []).append(text[:60])
    n = args.gen_tokens * len(prompts)
    res["free"] = {k: {"seconds": round(s, 2), "tokens": n, "chars": c, "chinese_chars": z,
                       "chinese_chars_per_token": round(z / n, 3), "new_token_uses": u, "replacement_chars": r,
                       "tokens_per_s": round(n / s, 2), "chinese_chars_per_s": round(z / s, 2)}
                   for k, (s, c, z, u, r) in free.items()}
    b = res["free"]["base"]["chinese_chars_per_s"]
    res["free"]["ratio_chars_per_s"] = round(res["free"]["expanded"]["chinese_chars_per_s"] / b, 3) if b else None
    res["free"]["samples"] = samples
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--strings", type=int, default=10000)
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--answer-chars", type=int, default=32)
    ap.add_argument("--gen-tokens", type=int, default=32)
    ap.add_argument("--context", type=int, default=64, help="context tokens of the step-cost measurement")
    ap.add_argument("--step-rounds", type=int, default=30)
    ap.add_argument("--warmup-steps", type=int, default=40)
    ap.add_argument("--warmup-texts", type=int, default=2000)
    ap.add_argument("--warmup-batch", type=int, default=8)
    ap.add_argument("--warmup-len", type=int, default=64)
    ap.add_argument("--warmup-lr", type=float, default=1e-2)
    ap.add_argument("--warm-base", action="store_true", help="give the base the same warm-up (rows its tokens use)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-decode", action="store_true")
    ap.add_argument("--quick", action="store_true", help="small smoke run: 2k tokens, 500 strings, 2 prompts")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "vocab"))
    args = ap.parse_args()
    if args.quick:
        args.size, args.strings, args.prompts, args.gen_tokens, args.warmup_steps = 2000, 500, 2, 8, 2
        args.answer_chars, args.step_rounds = 16, 6
        args.out = args.out + "-quick"
    if not MEDICAL.exists():
        sys.exit(f"{MEDICAL} is missing: this benchmark needs ../shared/data")
    from transformers import AutoTokenizer
    out = Path(args.out)
    res = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
           "cpu": platform.processor() or platform.machine(), "command": " ".join(sys.argv), "args": vars(args),
           "load_start": os.getloadavg()}
    print("1. tokenizer", flush=True)
    res["tokenizer"] = stage_tokenizer(args, out)
    base_dir = res["tokenizer"]["base_path"]
    base, new = AutoTokenizer.from_pretrained(base_dir), AutoTokenizer.from_pretrained(str(out / "tok"))
    print("2. round trip", flush=True)
    res["round_trip"] = stage_round_trip(base, new, mixed_strings(args.strings, seed=1))
    print("3. unchanged ids", flush=True)
    res["unchanged"] = stage_unchanged(base, new)
    res["load_after_ids"] = os.getloadavg()
    print("3b. plain add_tokens recipe", flush=True)
    res["add_tokens"] = stage_plain_add_tokens(base_dir, out / "tok", base, new, mixed_strings(args.strings, seed=1))
    if not args.skip_decode:
        print("4. decoding", flush=True)
        res["load_before_decode"] = os.getloadavg()
        res["decode"] = stage_decode(args, base_dir, out / "tok", res["tokenizer"]["heldout_medical"])
    res["load_end"] = os.getloadavg()
    (out / "results.json").write_text(json.dumps(res, ensure_ascii=False, indent=2), encoding="utf-8")
    t, r, u = res["tokenizer"], res["round_trip"], res["unchanged"]
    h = t["heldout_medical"]
    print(f"\nadded {t['added']:,} tokens (budget {t['size']:,})")
    print(f"held-out medical tokens/char: {h['before']['tokens_per_char']} -> {h['after']['tokens_per_char']} (x{h['ratio']})")
    print(f"round trip failures on {r['strings']:,} mixed strings: expanded {r['failures_expanded']}, base {r['failures_base']}")
    print(f"ids changed: english {u['english']['changed']}/{u['english']['texts']}, code {u['code']['changed']}/{u['code']['texts']}")
    if "decode" in res:
        d = res["decode"]
        print(f"step: base {d['step']['tokens_per_s']['base']} tok/s, expanded {d['step']['tokens_per_s']['expanded']} "
              f"tok/s; implied Chinese chars/s ratio {d['step']['implied_ratio_chars_per_s']}")
        for k in ("forced", "free"):
            print(f"{k}: base {d[k]['base']['chinese_chars_per_s']} zh chars/s, expanded "
                  f"{d[k]['expanded']['chinese_chars_per_s']} zh chars/s, ratio {d[k]['ratio_chars_per_s']}")
    for name, a in res["add_tokens"]["tokenizers"].items():
        print(f"{name}: held-out {a['heldout_medical']['tokens_per_char']} tokens/char, encode {a['encode_chars_per_s']:,} chars/s, "
              f"round-trip failures {a['round_trip_failures']}")
    print(f"load average start {res['load_start']}, end {res['load_end']}")
    print(f"results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
