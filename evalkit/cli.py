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


def _load_yaml(path: str | None) -> dict:
    if not path:
        return {}
    import yaml
    try:
        cfg = yaml.safe_load(open(path, encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise click.ClickException(f"{path}: not valid YAML: {e}")
    if not isinstance(cfg, dict):
        raise click.ClickException(f"{path}: the config must be a mapping of options")
    return cfg


@main.command()
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", help="Eval set to generate on: JSONL (id, task, prompt, reference | answer, choices) or a curated set.")
@click.option("--predictions", help="Score these outputs (JSONL: id, task, prompt, prediction, reference | answer) instead.")
@click.option("--model", help="Model folder or 'smollm2' (the bundled SmolLM2-135M-Instruct); never a hub download.")
@click.option("--adapter", help="PEFT adapter folder to load on top of --model.")
@click.option("--out", "-o", help="Run folder (default: the config's out, else ./evalkit-out).")
@click.option("--metrics", help="Comma-separated: bleu,chrf,rouge,em,contains,choice (default: what the data supports).")
@click.option("--gate", "gates", multiple=True, help="Fail (exit 1) unless METRIC[@TASK] OP NUMBER holds, e.g. 'rougeL>=0.30'.")
@click.option("--bleu-tokenize", help="sacrebleu tokenizer for BLEU (default: zh for CJK references, else 13a).")
@click.option("--rouge-tokenizer", type=click.Choice(["cjk", "jieba"]), help="ROUGE tokens (default cjk).")
@click.option("--lowercase", is_flag=True, default=None, help="Case-insensitive BLEU and chrF.")
@click.option("--choice-mode", type=click.Choice(["generate", "loglik"]),
              help="Choice questions: extract the letter from generated text, or rank options by log-likelihood.")
@click.option("--bootstrap", type=int, help="Bootstrap resamples for the 95%% intervals (default 1000; 0 = none).")
@click.option("--seed", type=int, help="Seed for bootstrap (and sampling when temperature > 0).")
@click.option("--limit", type=int, help="Only the first N items.")
@click.option("--max-new-tokens", type=int, help="Generation length limit (default 256).")
@click.option("--batch-size", type=int, help="Generation batch size (default 8).")
@click.option("--temperature", type=float, help="0 = greedy (default).")
@click.option("--no-chat-template", is_flag=True, default=None, help="Feed the raw prompt, not the chat template.")
@click.option("--cache", help="Generation cache file (default: $SFTKIT_CACHE/evalkit/generations.sqlite), or 'off'.")
@click.option("--threads", type=int, help="CPU threads for the model (default: torch's; 1 helps on a busy machine).")
@click.option("--no-progress", is_flag=True, default=None, help="No progress bars.")
def auto(config, data, predictions, model, adapter, out, metrics, gates, bleu_tokenize, rouge_tokenizer, lowercase,
         choice_mode, bootstrap, seed, limit, max_new_tokens, batch_size, temperature, no_chat_template, cache,
         threads, no_progress):
    """Generate (or read) predictions and score them: BLEU, chrF, ROUGE-1/2/L, choice accuracy, EM.

    \b
    Examples:
      evalkit auto --predictions preds.jsonl --out run/ --gate 'rougeL>=0.30'
      evalkit auto --data eval.jsonl --model smollm2 --adapter runs/lora --out run/
    """
    from curate.config import ConfigError
    from .auto import run_auto
    from .data import DataError
    from .report import format_table
    cfg = _load_yaml(config)
    gen = dict(cfg.get("generation") or {}) if isinstance(cfg.get("generation"), dict) else cfg.get("generation")
    flags = {"data": data, "predictions": predictions, "model": model, "adapter": adapter, "out": out,
             "metrics": [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
             "gates": list(gates) or None, "bleu_tokenize": bleu_tokenize, "rouge_tokenizer": rouge_tokenizer,
             "lowercase": lowercase, "choice_mode": choice_mode, "bootstrap": bootstrap, "seed": seed,
             "limit": limit, "cache": cache, "threads": threads, "progress": False if no_progress else None}
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if isinstance(gen, dict):
        gen.update({k: v for k, v in {"max_new_tokens": max_new_tokens, "batch_size": batch_size,
                                      "temperature": temperature, "seed": seed,
                                      "chat_template": False if no_chat_template else None}.items() if v is not None})
        cfg["generation"] = gen
    try:
        result = run_auto(cfg, log=lambda m: click.echo(m, err=True))
    except (ConfigError, DataError, FileNotFoundError) as e:
        raise click.ClickException(str(e))
    click.echo(format_table(result["summary"]))
    failed = [g for g in result["gates"] if not g["passed"]]
    for g in result["gates"]:
        actual = "not computed" if g["actual"] is None else f"{g['actual']:.4g}"
        click.echo(f"gate {g['gate']}: {'pass' if g['passed'] else 'FAIL'} (actual {actual})")
    click.echo(f"results in {result['out']}/ (items.jsonl, summary.json, report.html, manifest.json)")
    if failed:
        sys.exit(1)


@main.command()
@click.option("--data-dir", required=True, envvar="EVALKIT_CMMLU_DIR", type=click.Path(exists=True, file_okay=False),
              help="CMMLU-format folder with dev/ and test/ SUBJECT.csv files (or $EVALKIT_CMMLU_DIR).")
@click.option("--model", help="Model folder or 'smollm2' (the bundled SmolLM2-135M-Instruct).")
@click.option("--adapter", help="PEFT adapter folder to load on top of --model.")
@click.option("--subjects", help="Comma-separated subjects, or 'medical' (default: every subject in test/).")
@click.option("--mode", type=click.Choice(["loglik", "generate"]), default="loglik", show_default=True,
              help="Rank option letters by log-likelihood, or generate and extract the letter.")
@click.option("--shots", type=click.IntRange(0, 5), default=5, show_default=True, help="Examples from dev/ per prompt.")
@click.option("--limit", type=int, help="Only the first N test questions per subject.")
@click.option("--max-new-tokens", type=int, default=16, show_default=True, help="Generate mode: answer length limit.")
@click.option("--out", "-o", default="evalkit-cmmlu", show_default=True, help="Run folder.")
@click.option("--threads", type=int, help="CPU threads for the model (1 helps on a busy machine).")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap resamples for intervals.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def cmmlu(data_dir, model, adapter, subjects, mode, shots, limit, max_new_tokens, out, threads, bootstrap, seed,
          no_progress):
    """Multiple-choice accuracy on CMMLU-format folders, k-shot from dev/, with a letter check.

    \b
    Example:
      evalkit cmmlu --data-dir data/cmmlu --model smollm2 --subjects medical --mode loglik --shots 5
    """
    from .cmmlu import MEDICAL, CmmluError, run_cmmlu
    from .report import format_table
    names = None
    if subjects:
        names = [n for s in subjects.split(",") for n in (MEDICAL if s.strip() == "medical" else [s.strip()]) if n]
        if subjects.strip() == "medical":
            from .cmmlu import list_subjects
            names = [n for n in names if n in set(list_subjects(data_dir))]
    cfg = {"data_dir": data_dir, "subjects": names, "model": model, "adapter": adapter, "mode": mode, "shots": shots,
           "limit": limit, "max_new_tokens": max_new_tokens, "out": out, "threads": threads, "bootstrap": bootstrap,
           "seed": seed, "progress": not no_progress}
    try:
        result = run_cmmlu(cfg, log=lambda m: click.echo(m, err=True))
    except (CmmluError, FileNotFoundError) as e:
        raise click.ClickException(str(e))
    click.echo(format_table(result["summary"]))
    c = result["check"]["all"]
    click.echo(f"letters: gold {c['gold_letters']}  predicted {c['predicted_letters']}")
    click.echo(f"accuracy {c['accuracy']:.4f} vs {c['chance_accuracy_given_letters']:.4f} expected by chance "
               f"given these letter distributions (binomial p = {c['p_value_vs_chance']:.3g})")
    click.echo(f"results in {result['out']}/ (items.jsonl, summary.json, cmmlu.json, report.html, manifest.json)")


@main.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("--trials", type=int, default=2000, show_default=True, help="Randomization trials and bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--top", type=int, default=10, show_default=True, help="Items that changed most, per metric.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Also write the comparison as JSON here.")
def compare(run_a, run_b, trials, seed, top, out):
    """Is RUN_B better than RUN_A? Per metric and task: B-A, paired-bootstrap CI, randomization p.

    \b
    Example:
      evalkit compare runs/base runs/lora --out runs/lora/compare.json
    """
    from .compare import CompareError, compare_runs, format_compare
    try:
        result = compare_runs(run_a, run_b, trials=trials, seed=seed, top=top)
    except CompareError as e:
        raise click.ClickException(str(e))
    click.echo(format_compare(result))
    for name, e in result["metrics"].items():
        if e["changed_most"]:
            click.echo(f"\nchanged most ({name}):")
            for c in e["changed_most"][:5]:
                click.echo(f"  {c['id']} [{c['task']}] {c['a']:.4g} -> {c['b']:.4g}")
    if out:
        from curate.writing import write_json
        write_json(out, result)
        click.echo(f"wrote {out}")


# Expert review (issue 7): review export|import, report, rubric validate|xml.
from .review.commands import register as _register_review  # noqa: E402

_register_review(main)


if __name__ == "__main__":
    sys.exit(main())
