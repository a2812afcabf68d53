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


if __name__ == "__main__":
    sys.exit(main())
