"""Model outputs for evaluation: batched greedy generation with a persistent cache, and
log-likelihood scoring of answer options (lm-eval style).

Models come from trainplug.models.resolve_model (a local folder or the bundled SmolLM2; never a
hub) and adapters from peft.  A generation is cached under a key made of the model's and
adapter's fingerprints, the exact rendered prompt and the generation parameters, so a rerun
generates nothing twice and an interrupted run resumes where it stopped.

    >>> from evalkit.generate import load_model, generate
    >>> lm = load_model("smollm2")                                        # doctest: +SKIP
    >>> generate(lm, [[{"role": "user", "content": "1+1="}]], {"max_new_tokens": 8})  # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

GENERATION_DEFAULTS = {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "batch_size": 8,
                       "chat_template": True, "seed": 0}
NOT_IN_CACHE_KEY = ("batch_size",)   # batching does not change greedy text


class LoadedModel:
    """A tokenizer now and the model on first use, so a fully cached rerun never loads weights."""

    def __init__(self, path: Path, adapter: Path | None, tokenizer, fingerprint: dict):
        self.path, self.adapter, self.tokenizer, self.fingerprint = path, adapter, tokenizer, fingerprint
        self._model = None

    @property
    def model(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM
            model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32)
            if self.adapter is not None:
                from peft import PeftModel
                model = PeftModel.from_pretrained(model, str(self.adapter))
            self._model = model.eval()
        return self._model


def _file_digest(path: Path, whole: bool) -> str:
    """sha256 of a small file; for big weight files the header, size and mtime stand in."""
    h = hashlib.sha256()
    st = path.stat()
    if whole or st.st_size < 64 << 20:
        h.update(path.read_bytes())
    else:
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def folder_fingerprint(folder: Path) -> str:
    parts = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja"):
            parts.append(f"{p.name}={_file_digest(p, whole=False)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def load_model(name_or_dir: str | None, adapter: str | None = None, threads: int | None = None) -> LoadedModel:
    """The tokenizer (now) and the model in float32, eval mode, with the adapter (on first use).

    ``threads`` caps torch's CPU threads: on a busy machine, fewer threads than cores avoids the
    spin-waiting of an oversubscribed thread pool (measured: 4 x 32 tokens took 98 s with 2
    threads and 6 s with 1 at load 9 on 2 cores).
    """
    from transformers import AutoTokenizer
    from trainplug.models import resolve_model
    if threads:
        import torch
        torch.set_num_threads(int(threads))
    path = Path(resolve_model(name_or_dir))
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    fp = {"model": str(path), "model_fingerprint": folder_fingerprint(path)}
    apath = None
    if adapter:
        apath = Path(adapter)
        if not (apath / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
        fp.update({"adapter": str(apath), "adapter_fingerprint": folder_fingerprint(apath)})
    return LoadedModel(path, apath, tok, fp)


def render_prompt(lm: LoadedModel, messages: list[dict], chat_template: bool = True) -> str:
    """The exact text the model sees: the chat template when it has one, else the turns joined."""
    if chat_template and getattr(lm.tokenizer, "chat_template", None):
        return lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "\n".join(m["content"] for m in messages)


class GenerationCache:
    """sqlite file of key -> generated text; each batch is committed as soon as it is done."""

    def __init__(self, path: Path | None):
        self.path = path
        self._db = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), timeout=60)
            self._db.execute("CREATE TABLE IF NOT EXISTS gen (key TEXT PRIMARY KEY, text TEXT NOT NULL)")

    def get(self, key: str) -> str | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT text FROM gen WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put_many(self, pairs: list[tuple[str, str]]) -> None:
        if self._db is not None:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO gen VALUES (?, ?)", pairs)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def cache_key(fingerprint: dict, prompt_text: str, params: dict) -> str:
    keyed = {k: v for k, v in params.items() if k not in NOT_IN_CACHE_KEY}
    blob = json.dumps({"fp": fingerprint, "prompt": prompt_text, "params": keyed}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def generate(lm: LoadedModel, conversations: list[list[dict]], params: dict | None = None,
             cache: GenerationCache | None = None, progress: bool = False) -> tuple[list[str], dict]:
    """One completion per conversation; returns (texts, {"cached": n, "generated": n})."""
    import torch
    from tqdm import tqdm
    params = {**GENERATION_DEFAULTS, **(params or {})}
    prompts = [render_prompt(lm, c, params["chat_template"]) for c in conversations]
    keys = [cache_key(lm.fingerprint, p, params) for p in prompts]
    out: list[str | None] = [cache.get(k) if cache else None for k in keys]
    todo = [i for i, o in enumerate(out) if o is None]
    todo.sort(key=lambda i: len(prompts[i]))   # similar lengths per batch: little padding
    tok, model = lm.tokenizer, lm.model
    tok.padding_side = "left"
    bs = max(1, int(params["batch_size"]))
    sample = float(params["temperature"]) > 0
    torch.manual_seed(int(params["seed"]))
    bar = tqdm(total=len(todo), desc="generate", unit="item", disable=not progress or not todo)
    for start in range(0, len(todo), bs):
        batch = todo[start:start + bs]
        enc = tok([prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        kwargs = {"max_new_tokens": int(params["max_new_tokens"]), "do_sample": sample,
                  "pad_token_id": tok.pad_token_id}
        if sample:
            kwargs.update(temperature=float(params["temperature"]), top_p=float(params["top_p"]))
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            gen = model.generate(**enc, **kwargs)
        texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, t in zip(batch, texts):
            out[i] = t.strip()
        if cache:
            cache.put_many([(keys[i], out[i]) for i in batch])
        bar.update(len(batch))
    bar.close()
    return [o or "" for o in out], {"cached": len(prompts) - len(todo), "generated": len(todo)}


# -- log-likelihood of options ---------------------------------------------------------------

def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _crop_to(cache, length: int) -> None:
    """Drop cached positions past ``length`` (a negative count works on every transformers version)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


class PrefixScorer:
    """Log-probabilities of continuations after ``prefix + context``, with the shared prefix (the
    few-shot examples) run through the model once and its key/value cache reused per question.

    Token boundaries follow the joint tokenization of prefix + context + continuation; where the
    prefix does not tokenize on its own the same way, the item runs without the cached prefix.
    """

    def __init__(self, lm: LoadedModel, prefix: str = ""):
        import torch
        self.lm, self.prefix = lm, prefix
        self.prefix_ids = lm.tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        self._cache = None
        if self.prefix_ids:
            with torch.inference_mode():
                out = lm.model(torch.tensor([self.prefix_ids]), use_cache=True)
            self._cache = out.past_key_values
            self._last_logits = out.logits[0, -1]
        self.cache_hits = self.cache_misses = 0

    def _run(self, ids: list[int]):
        """Logits for every position of ``ids`` (which start with the prefix when cached)."""
        import torch
        n = len(self.prefix_ids)
        if self._cache is not None and ids[:n] == self.prefix_ids and len(ids) > n:
            self.cache_hits += 1
            with torch.inference_mode():
                out = self.lm.model(torch.tensor([ids[n:]]), past_key_values=self._cache, use_cache=True)
            _crop_to(self._cache, n)
            return torch.cat([self._last_logits[None], out.logits[0]], 0), n - 1   # logits from position n-1
        self.cache_misses += 1
        with torch.inference_mode():
            out = self.lm.model(torch.tensor([ids]))
        return out.logits[0], 0

    def logprobs(self, context: str, continuations: list[str]) -> list[float]:
        """Sum of log P(continuation tokens | prefix + context) for each continuation."""
        import torch
        tok = self.lm.tokenizer
        ctx_ids = tok(self.prefix + context, add_special_tokens=False)["input_ids"]
        fulls = [tok(self.prefix + context + c, add_special_tokens=False)["input_ids"] for c in continuations]
        split = min(_common_prefix(ctx_ids, f) for f in fulls)
        if all(len(f) == split + 1 for f in fulls):   # one token each: a single forward pass
            logits, offset = self._run(fulls[0][:split])
            lp = torch.log_softmax(logits[split - 1 - offset].float(), -1)
            return [float(lp[f[split]]) for f in fulls]
        scores = []
        for f in fulls:
            logits, offset = self._run(f)
            lp = torch.log_softmax(logits.float(), -1)
            scores.append(float(sum(lp[t - 1 - offset, f[t]] for t in range(split, len(f)))))
        return scores

    def greedy(self, context: str, max_new_tokens: int = 16, stop: str = "\n") -> str:
        """Greedy continuation of prefix + context (stops at ``stop`` or end of sequence)."""
        import torch
        tok, model = self.lm.tokenizer, self.lm.model
        ids = tok(self.prefix + context, add_special_tokens=False)["input_ids"]
        n = len(self.prefix_ids)
        use_cache = self._cache is not None and ids[:n] == self.prefix_ids and len(ids) > n
        self.cache_hits += use_cache
        self.cache_misses += not use_cache
        new: list[int] = []
        with torch.inference_mode():
            if use_cache:
                out = model(torch.tensor([ids[n:]]), past_key_values=self._cache, use_cache=True)
            else:
                out = model(torch.tensor([ids]), use_cache=True)
            past = out.past_key_values
            for _ in range(max_new_tokens):
                nxt = int(out.logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                new.append(nxt)
                if stop and stop in tok.decode(new):
                    break
                out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
        if use_cache:
            _crop_to(self._cache, n)
        text = tok.decode(new, skip_special_tokens=True)
        return text.split(stop)[0] if stop else text
