"""The run config: YAML (loaded with safe_load) plus command-line flags, checked in full before
any work.  ``load_config`` returns a plain dict or raises ConfigError listing *every* problem."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .reading import SHAPES, SUFFIX_FORMATS, InputError, expand_inputs, parse_mapping

TOP_KEYS = {"inputs", "out", "seed", "steps", "order", "workers", "batch_size", "output_format", "progress"}
PATH_OPTIONS = {"lexicon", "tokenizer", "index"}   # step options that name files
INPUT_KEYS = {"path", "map", "shape", "task", "encoding", "role"}


class ConfigError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("the config has {} problem{}:\n".format(len(problems), "s" * (len(problems) != 1))
                         + "\n".join(f"  - {p}" for p in problems))


def _type_name(v) -> str:
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def _check_options(step: str, cls, opts, problems: list[str]) -> None:
    if opts is False or opts is None or opts is True:
        return
    if not isinstance(opts, dict):
        problems.append(f"steps.{step}: expected a mapping of options or false, got {opts!r}")
        return
    well_typed = {}
    for key, val in opts.items():
        if key not in cls.defaults:
            problems.append(f"steps.{step}.{key}: unknown option (known: {', '.join(sorted(cls.defaults)) or 'none'})")
            continue
        default = cls.defaults[key]
        if default is None or val is None:
            well_typed[key] = val
            continue
        ok = isinstance(val, type(default)) or (isinstance(default, float) and isinstance(val, int) and not isinstance(val, bool))
        if isinstance(default, bool) != isinstance(val, bool):
            ok = False
        if not ok:
            problems.append(f"steps.{step}.{key}: expected {_type_name(default)}, got {val!r}")
        else:
            well_typed[key] = val
    # The step's own checks see only well-typed values (a wrong type is already listed above).
    problems.extend(f"steps.{step}: {p}" for p in cls.problems({**cls.defaults, **well_typed}))


def _input_problems(item: dict) -> list[str]:
    """A missing file, a file type or an encoding that cannot be read: found now, not mid-run."""
    import codecs
    try:
        files = expand_inputs([str(item["path"])])
    except InputError as e:
        return [str(e)]
    out = [f"{f}: unknown file type {Path(f).suffix!r} (use {' '.join(sorted(SUFFIX_FORMATS))})"
           for f in files if Path(f).suffix.lower() not in SUFFIX_FORMATS]
    if item.get("encoding"):
        try:
            codecs.lookup(item["encoding"])
        except LookupError:
            out.append(f"encoding: {item['encoding']!r} is not an encoding Python knows")
    return out


def load_config(path: str | None = None, *, inputs=(), mapping: str | None = None, out: str | None = None,
                only: str | None = None, skip: str | None = None, overrides: dict | None = None) -> dict:
    """Merge YAML and flags (flags win) and validate.  ``inputs`` from flags replace the config's."""
    from .pipeline import DEFAULT_ORDER, STEP_CLASSES
    problems: list[str] = []
    cfg: dict = {}
    if path:
        try:
            cfg = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError([f"config file {path!r} does not exist"])
        except yaml.YAMLError as e:
            raise ConfigError([f"{path}: not valid YAML: {e}"])
        if not isinstance(cfg, dict):
            raise ConfigError([f"{path}: the top level must be a mapping"])
        base = Path(path).parent
    else:
        base = Path(".")
    for key in sorted(set(cfg) - TOP_KEYS):
        problems.append(f"{key}: unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    cfg.update({k: v for k, v in (overrides or {}).items() if v is not None})

    # inputs: flags replace the config's; --map applies to flag inputs (or to all when only one).
    raw_inputs = [{"path": p} for p in inputs] if inputs else cfg.get("inputs") or []
    if isinstance(raw_inputs, (str, dict)):
        raw_inputs = [raw_inputs]
    if not raw_inputs:
        problems.append("inputs: no input given (use --input PATH or an inputs: list in the config)")
    norm_inputs = []
    for i, item in enumerate(raw_inputs):
        item = {"path": item} if isinstance(item, str) else dict(item or {})
        where = f"inputs[{i}]"
        for key in sorted(set(item) - INPUT_KEYS):
            problems.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(INPUT_KEYS))})")
        if not item.get("path"):
            problems.append(f"{where}: has no path")
            continue
        if path and not Path(item["path"]).is_absolute() and not inputs:
            item["path"] = os.path.normpath(base / item["path"])
        m = mapping if mapping is not None and (inputs or len(raw_inputs) == 1) else item.get("map")
        try:
            item["map"] = parse_mapping(m) if isinstance(m, str) else dict(m or {})
        except ValueError as e:
            problems.append(f"{where}.map: {e}")
            item["map"] = {}
        if item.get("shape", "auto") not in SHAPES:
            problems.append(f"{where}.shape: {item['shape']!r} is not one of {', '.join(SHAPES)}")
        if item.get("role", "domain") not in ("domain", "general"):
            problems.append(f"{where}.role: {item['role']!r} is not domain or general")
        problems.extend(f"{where}: {p}" for p in _input_problems(item))
        norm_inputs.append(item)
    cfg["inputs"] = norm_inputs

    cfg["out"] = out or cfg.get("out") or "out"
    if path and not inputs and not out and not Path(cfg["out"]).is_absolute():
        cfg["out"] = os.path.normpath(base / cfg["out"])
    for key, default in (("seed", 0), ("workers", 0), ("batch_size", 2000)):
        cfg.setdefault(key, default)
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 0:
            problems.append(f"{key}: expected a non-negative integer, got {cfg[key]!r}")
    if cfg.get("output_format", "parquet") not in ("parquet", "jsonl"):
        problems.append(f"output_format: {cfg['output_format']!r} is not parquet or jsonl")

    steps_cfg = cfg.get("steps") or {}
    if not isinstance(steps_cfg, dict):
        problems.append("steps: expected a mapping of step name to options (or false to switch off)")
        steps_cfg = {}
    if path:   # file options in a config file are relative to that file, like its inputs
        for opts in steps_cfg.values():
            for key in PATH_OPTIONS & set(opts if isinstance(opts, dict) else ()):
                if isinstance(opts[key], str) and opts[key] and not Path(opts[key]).is_absolute():
                    opts[key] = os.path.normpath(base / opts[key])
    order = cfg.get("order") or list(DEFAULT_ORDER)
    for name in [*steps_cfg, *order]:
        if name not in STEP_CLASSES:
            problems.append(f"steps: unknown step {name!r} (known: {', '.join(DEFAULT_ORDER)})")
    selected = [n for n in order if n in STEP_CLASSES and steps_cfg.get(n, True) is not False]
    for flag, value in (("--only", only), ("--skip", skip)):
        names = [s.strip() for s in (value or "").split(",") if s.strip()]
        for n in names:
            if n not in STEP_CLASSES:
                problems.append(f"{flag}: unknown step {n!r} (known: {', '.join(DEFAULT_ORDER)})")
        if names and flag == "--only":
            selected = [n for n in order if n in names]
        elif names:
            selected = [n for n in selected if n not in names]
    for name in selected:
        _check_options(name, STEP_CLASSES[name], steps_cfg.get(name), problems)
    cfg["steps"] = {n: {**STEP_CLASSES[n].defaults, **(steps_cfg.get(n) if isinstance(steps_cfg.get(n), dict) else {})}
                    for n in selected}
    cfg.pop("order", None)
    if problems:
        raise ConfigError(problems)
    return cfg
