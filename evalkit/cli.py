"""The `evalkit` command line: every evalkit subcommand is wired here and nowhere else.

Commands register on the click group `main`; each imports its module lazily so `evalkit --help`
stays fast (torch and transformers load only when a model is needed).
"""
from __future__ import annotations

import sys

import click


@click.group()
@click.version_option(package_name="sftkit")
def main() -> None:
    """Evaluate models: automatic screening (auto, cmmlu, compare) and expert review."""


@main.command()
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", help="Eval set: predictions-style JSONL (id, task, prompt, reference) or a curated set (messages).")
@click.option("--predictions", help="Score these outputs (id, task, prompt, prediction, reference) instead of generating.")
@click.option("--model", help="Model name or folder (see trainplug.models.resolve_model).")
@click.option("--adapter", help="PEFT adapter folder to load on top of --model.")
@click.option("--out", "-o", help="Run folder (default: the config's out, else ./evalkit-out).")
def auto(config, data, predictions, model, adapter, out):
    """Generate (or read) predictions and score them with BLEU, chrF, ROUGE, choice accuracy, EM."""
    raise click.ClickException("evalkit auto is being built (issue 6)")


# Expert review (issue 7): review export|import, report, rubric validate|xml.
from .review.commands import register as _register_review  # noqa: E402

_register_review(main)


if __name__ == "__main__":
    sys.exit(main())
