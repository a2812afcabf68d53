"""The `curate` command line: every subcommand is wired here and nowhere else."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .config import ConfigError, load_config
from .reading import InputError


def _fail(e: Exception) -> None:
    raise click.ClickException(str(e))


@click.group()
@click.version_option(package_name="sftkit")
def main() -> None:
    """Turn raw instruction and dialogue corpora into clean fine-tuning sets."""


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--input", "-i", "inputs", multiple=True, help="Input file, glob or folder (repeatable); replaces the config's inputs.")
@click.option("--map", "mapping", help="Columns to schema keys, e.g. user=ask,assistant=answer,task=department (join with +).")
@click.option("--out", "-o", help="Output folder (default: the config's out, else ./out).")
@click.option("--only", help="Run only these steps (comma-separated).")
@click.option("--skip", help="Skip these steps (comma-separated).")
@click.option("--seed", type=int, help="Seed for every sampling step.")
@click.option("--workers", type=int, help="Worker processes (default: all cores).")
@click.option("--format", "output_format", type=click.Choice(["parquet", "jsonl"]), help="Format of the curated set.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def run(config, inputs, mapping, out, only, skip, seed, workers, output_format, no_progress):
    """Run the curation pipeline on CONFIG (YAML, optional) and/or --input files.

    \b
    Example:
      curate run --input raw.csv --map user=ask,assistant=answer,task=department --out out/
    """
    from .pipeline import run as run_pipeline
    try:
        cfg = load_config(config, inputs=inputs, mapping=mapping, out=out, only=only, skip=skip,
                          overrides={"seed": seed, "workers": workers, "output_format": output_format})
        result = run_pipeline(cfg, progress=not no_progress, log=lambda m: click.echo(m, err=True))
    except (ConfigError, InputError) as e:
        _fail(e)
    _summary(result)


@main.command()
@click.option("--input", "-i", "inputs", multiple=True, required=True, help="Input file, glob or folder (repeatable).")
@click.option("--out", "-o", required=True, help="Output folder.")
@click.option("--threshold", type=float, help="Jaccard similarity for near-duplicates (default 0.55).")
@click.option("--fields", help="SFT records: fields that must all be near-duplicates (default prompt,answer).")
@click.option("--keep", type=click.Choice(["first", "longest", "quality"]), help="Who stays in a cluster (default first).")
@click.option("--index", "index_dir", help="Index folder: dedup against earlier runs' kept records, then add this run's.")
@click.option("--map", "mapping", help="Columns to schema keys, as for `curate run`.")
@click.option("--memory-mb", type=int, help="Shingle data held in memory until verification; beyond it, on disk "
                                            "in the work folder (default 1024).")
@click.option("--workers", type=int, help="Worker processes (default: all cores).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def dedup(inputs, out, threshold, fields, keep, index_dir, mapping, memory_mb, workers, no_progress):
    """Remove exact and near duplicates only: the pipeline's readers and outputs, the dedup step alone.

    \b
    Example:
      curate dedup --input corpus.jsonl --out deduped/ --threshold 0.55
    """
    from .pipeline import run as run_pipeline
    opts = {k: v for k, v in (("threshold", threshold), ("fields", fields), ("keep", keep), ("index", index_dir),
                              ("memory_mb", memory_mb), ("workers", workers)) if v is not None}
    try:
        cfg = load_config(None, inputs=inputs, mapping=mapping, out=out, only="dedup",
                          overrides={"steps": {"dedup": opts}, "workers": workers})
        result = run_pipeline(cfg, progress=not no_progress, log=lambda m: click.echo(m, err=True))
    except (ConfigError, InputError) as e:
        _fail(e)
    _summary(result)
    d = result.report.get("step_report", {}).get("dedup", {})
    if d:
        click.echo(f"dedup: {d['removed']['exact']:,} exact + {d['removed']['near']:,} near duplicates removed; "
                   f"cluster sizes {d['cluster_sizes']}")


def _summary(result) -> None:
    t = result.report["totals"]
    click.echo(f"read {t['read']:,}  kept {t['kept']:,}  rejected {t['rejected']:,}")
    for path, s in result.report["sources"].items():
        click.echo(f"  {path}: read {s['read']:,} = kept {s['kept']:,} + rejected {s['rejected']:,}")
    click.echo(f"results in {result.out}/ (curated, rejects.parquet, report.html, report.json, manifest.json)")


@main.command()
@click.option("--input", "-i", "input_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A curated set (curated.parquet or .jsonl).")
@click.option("--format", "fmt", required=True, type=click.Choice(["alpaca", "sharegpt", "messages"]))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output file (.json array for alpaca, else .jsonl).")
def export(input_path, fmt, out):
    """Export a curated set for LLaMA-Factory (alpaca, sharegpt) or TRL (messages)."""
    from .export import export_records
    n = export_records(input_path, fmt, out)
    click.echo(f"wrote {n:,} records to {out} ({fmt})")


@main.command()
@click.option("--input", "-i", "inputs", multiple=True, required=True,
              help="Input file, glob or folder (repeatable): raw corpora in any shape `curate run` reads, or curated sets.")
@click.option("--map", "mapping", multiple=True,
              help="Columns to schema keys for raw CSV/JSON, e.g. user=ask,assistant=answer: once for all inputs, "
                   "or once per --input in order ('auto' keeps an input's own shape).")
@click.option("--base", help="Base tokenizer or model folder (default: SmolLM2-135M-Instruct).")
@click.option("--size", type=int, default=20000, show_default=True, help="Most tokens to add.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for the expanded tokenizer (AutoTokenizer.from_pretrained loads it) and vocab_report.json.")
@click.option("--heldout", type=float, default=0.05, show_default=True, help="Share of records held out for the report.")
@click.option("--coverage", type=float, default=0.9995, show_default=True,
              help="Character coverage: rarer characters stay as the base's byte pieces.")
@click.option("--min-frequency", type=int, default=3, show_default=True, help="Fewest occurrences for a merged piece.")
@click.option("--max-piece-len", type=int, default=8, show_default=True, help="Longest piece, in characters.")
@click.option("--terms", help="Comma-separated domain terms to report coverage for (default: a medical list).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the held-out split.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def vocab(inputs, mapping, base, size, out, heldout, coverage, min_frequency, max_piece_len, terms, seed, no_progress):
    """Add a corpus's Chinese words to a base tokenizer so Chinese takes far fewer tokens.

    Byte-level BPE bases (SmolLM2, Llama-3, Qwen) get new vocabulary entries plus their merges;
    sentencepiece bases get new pieces in their model proto. Text without Chinese keeps its ids.

    \b
    Example:
      curate vocab --input medical.csv --map user=ask,assistant=answer --size 20000 --out zh-tok/
      curate vocab -i medical.csv --map user=ask,assistant=answer -i alpaca_zh/ --map auto --out zh-tok/
    """
    from .vocab import VocabError, expand_vocab
    from .vocab.report import DEFAULT_TERMS, summary
    term_list = [t.strip() for t in terms.split(",") if t.strip()] if terms else list(DEFAULT_TERMS)
    try:
        report = expand_vocab(inputs, out, base=base, size=size, mapping=list(mapping) or None, heldout=heldout, coverage=coverage,
                              min_frequency=min_frequency, max_piece_len=max_piece_len, terms=term_list, seed=seed,
                              progress=not no_progress, log=lambda m: click.echo(m, err=True))
    except (VocabError, InputError, ValueError) as e:
        _fail(e)
    click.echo(summary(report))
    click.echo(f"tokenizer in {out}/ (vocab_report.json, vocab_report.md beside it)")


if __name__ == "__main__":
    sys.exit(main())
