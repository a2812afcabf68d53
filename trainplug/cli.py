"""The `trainplug` command line: sft, inspect, estimate, merge. Every subcommand is wired here."""
from __future__ import annotations

import sys

import click

from curate.config import ConfigError


def _config(config, **flags) -> dict:
    from .config import load_config
    try:
        return load_config(config, overrides=flags)
    except ConfigError as e:
        raise click.ClickException(str(e))


def _common(f):
    opts = [
        click.option("--data", "-d", help="Curated set (.parquet/.jsonl) or a `curate run` output folder."),
        click.option("--model", "-m", help="Local transformers model folder (default: SmolLM2-135M-Instruct)."),
        click.option("--tokenizer", type=click.Path(exists=True, file_okay=False),
                     help="Tokenizer folder (e.g. from `curate vocab`); a larger vocabulary grows the model."),
        click.option("--method", type=click.Choice(["lora", "qlora", "ia3", "prefix", "full"])),
        click.option("--max-seq-len", type=int, help="Longest example in tokens (longer ones are truncated or dropped)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return click.argument("config", required=False, type=click.Path(dir_okay=False))(f)


@click.group()
@click.version_option(package_name="sftkit")
def main() -> None:
    """Fine-tune a causal LM on a curated set with PEFT: fast (packed), safe (spike guard, exact resume)."""


@main.command()
@_common
@click.option("--general", help="General data to mix in (same formats as --data).")
@click.option("--mix", help='Domain:general record ratio inside the loader, e.g. "1:5" (5 general per domain record).')
@click.option("--max-steps", type=int, help="Optimizer steps (past the data's epochs, the data cycles).")
@click.option("--save-every", type=int, help="Checkpoint every N steps (and always at the end).")
@click.option("--out", "-o", help="Output folder (default: out/sft).")
@click.option("--resume", is_flag=True, help="Continue exactly from the latest checkpoint in --out.")
@click.option("--seed", type=int)
@click.option("--lr", type=float, help="Peak learning rate (default per method; full: 1e-5).")
@click.option("--threads", type=int, help="CPU threads for torch (default: torch's, all cores).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def sft(config, data, model, tokenizer, method, max_seq_len, general, mix, max_steps, save_every, out, resume, seed, lr,
        threads, no_progress):
    """Supervised fine-tuning (and continued pre-training on `text` records).

    \b
    Example:
      trainplug sft --data out/curated.parquet --general alpaca.parquet --mix 1:5 --max-steps 200 --out out/sft
      torchrun --nproc-per-node 2 -m trainplug.cli sft run.yaml --resume
    Writes OUT/adapter/, OUT/checkpoints/, metrics.jsonl, events.jsonl, report.html, manifest.json.
    """
    from .config import full_lr_warning
    from .data import DataError
    from .recipe import RunError, run
    cfg = _config(config, data=data, model=model, tokenizer=tokenizer, method=method, max_seq_len=max_seq_len,
                  general=general, mix=mix, max_steps=max_steps, save_every=save_every, out=out, seed=seed, lr=lr,
                  threads=threads, progress=False if no_progress else None)
    warn = full_lr_warning(cfg)
    if warn:
        click.echo(f"warning: {warn}", err=True)
    try:
        summary = run(cfg, resume=resume)
    except (DataError, RunError, ConfigError, FileNotFoundError) as e:
        raise click.ClickException(str(e))
    best = summary.get("best_eval_loss")
    click.echo(f"{summary['status']}: {summary['steps']} steps, {summary.get('tokens_per_s') or 0:,.0f} tokens/s"
               + (f", best eval loss {best:.4f} at step {summary['best_step']}" if best is not None else "")
               + (f", {summary['rollbacks']} rollback(s)" if summary.get("rollbacks") else ""))
    click.echo(f"results in {cfg['out']}/ (adapter/, checkpoints/, metrics.jsonl, events.jsonl, report.html)")


@main.command()
@_common
@click.option("--index", "-n", default=0, show_default=True, help="Which training record to show.")
@click.option("--plain", is_flag=True, help="No colours: trained spans are shown as {+...+}.")
def inspect(config, data, model, tokenizer, method, max_seq_len, index, plain):
    """Show one sample as the model sees it: masked spans (no loss) and trained spans.

    \b
    Example:
      trainplug inspect --data out/curated.parquet --index 3
    """
    from .data import DataError, encode_records, load_records, load_tokenizer
    from .models import resolve_model
    cfg = _config(config, data=data, model=model, tokenizer=tokenizer, method=method, max_seq_len=max_seq_len)
    try:
        recs = load_records(cfg["data"])
        if not 0 <= index < len(recs):
            raise click.ClickException(f"--index {index}: the set has {len(recs)} records")
        tok = load_tokenizer(resolve_model(cfg["model"]), cfg["tokenizer"], cfg["chat_template"])
        exs = encode_records([recs[index]], tok, cfg)
    except DataError as e:
        raise click.ClickException(str(e))
    color = not plain and sys.stdout.isatty()
    click.echo(f"record {recs[index]['id']!r}: " + ", ".join(
        f"{len(e)} tokens, {e.n_trainable} trained" for e in exs)
        + ("  [trained spans in green, masked spans dim]" if color else "  [trained spans shown as {+...+}, the rest is masked]"))
    for ex in exs:
        click.echo(render_mask(tok, ex, color))


def render_mask(tok, ex, color: bool = False) -> str:
    """The example's text with its trained spans marked (the first token never trains)."""
    learned = ex.mask.copy()
    learned[0] = False
    parts, start = [], 0
    for t in range(1, len(ex) + 1):
        if t == len(ex) or learned[t] != learned[start]:
            text = tok.decode(ex.ids[start:t].tolist())
            if learned[start]:
                parts.append(click.style(text, fg="green", bold=True) if color else "{+" + text + "+}")
            else:
                parts.append(click.style(text, dim=True) if color else text)
            start = t
    return "".join(parts)


@main.command()
@click.option("--model", "-m", help="Local transformers model folder (default: SmolLM2-135M-Instruct); only config.json is read.")
@click.option("--method", type=click.Choice(["lora", "qlora", "ia3", "prefix", "full"]), default="lora", show_default=True)
@click.option("--seq-len", type=int, default=2048, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True, help="Sequences a micro-batch.")
@click.option("--gradient-checkpointing", is_flag=True)
@click.option("--data", "-d", help="A curated set: count its samples and give advice.")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(model, method, seq_len, batch, gradient_checkpointing, data, as_json):
    """Parameters, trainable share and GPU memory, before anything is loaded onto a GPU.

    \b
    Example:
      trainplug estimate --model ./Llama-2-7b --method full --seq-len 2048
    """
    import json

    from . import estimate as est
    from .models import ModelNotFound, resolve_model
    try:
        path = resolve_model(model)
    except ModelNotFound as e:
        raise click.ClickException(str(e))
    res = est.estimate(str(path), method, seq_len=seq_len, batch=batch, gradient_checkpointing=gradient_checkpointing)
    if data:
        from .data import DataError, load_records
        try:
            recs = load_records(data)
        except DataError as e:
            raise click.ClickException(str(e))
        n_text = sum(1 for r in recs if not r.get("messages"))
        res["data"] = {"samples": len(recs), "dialogues": len(recs) - n_text, "documents": n_text,
                       "advice": est.data_advice(len(recs) - n_text)}
    if as_json:
        click.echo(json.dumps(res, indent=2, ensure_ascii=False))
        return
    click.echo(f"{path}  method={method}  seq_len={seq_len} x batch={batch}"
               + ("  (gradient checkpointing)" if gradient_checkpointing else ""))
    click.echo(f"parameters {res['params'] / 1e6:,.1f}M, trainable {res['trainable_params'] / 1e6:,.2f}M "
               f"({100 * res['trainable_share']:.2f}%)")
    for k, v in res["gib"].items():
        click.echo(f"  {k:<12} {v:8.2f} GiB")
    click.echo(f"  {'total':<12} {res['total_gib']:8.2f} GiB")
    if data:
        click.echo(res["data"]["advice"])


@main.command()
@click.option("--adapter", required=True, type=click.Path(exists=True, file_okay=False), help="An adapter/ folder from trainplug sft.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Where to write the merged model.")
@click.option("--model", "-m", help="The base model (default: the one recorded with the adapter).")
@click.option("--dtype", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True)
def merge(adapter, out, model, dtype):
    """Merge a LoRA/IA3 adapter into its base model and save a plain transformers folder.

    \b
    Example:
      trainplug merge --adapter out/sft/adapter --out out/merged
    """
    from .methods import merge as do_merge
    from .models import ModelNotFound
    try:
        path = do_merge(adapter, out, model, dtype)
    except (ModelNotFound, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e))
    click.echo(f"merged model written to {path}/")


if __name__ == "__main__":
    sys.exit(main())
