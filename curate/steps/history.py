"""history: fit multi-turn dialogues into a length budget by dropping their oldest whole turns.

A dialogue is its leading system messages plus *turns*: a turn is a user message (or several in
a row) and the replies that follow it, up to the next user message.  Over the budget, the step
keeps the system prompt, the last turn, then earlier turns from the most recent back for as long
as they fit (the kept turns are always contiguous: a gap would leave answers to questions that
are no longer there).  ``keep_first_turn: true`` also keeps the first turn, where patients often
state their problem, when it fits beside the system prompt and the last turn.

The budget is in characters (``max_chars``) or in tokens of a local tokenizer folder
(``max_tokens`` + ``tokenizer: path/to/model``: a ``tokenizer.json`` is read with the
``tokenizers`` library, anything else with transformers' AutoTokenizer, never from a hub); it
counts message contents, not chat-template tokens, so leave a margin.  Both set: both must hold.

What was dropped goes to ``meta["history"]`` (``dropped_turns``, ``dropped_messages``,
``dropped_chars``, and ``dropped_tokens`` with a tokenizer).  A dialogue that cannot fit even as
system prompt plus last turn is dropped with reason ``history:last_turn_over_budget``: cutting
inside a turn would teach the model a truncated answer.  Plain documents (``text``) pass through.
The default budget is none (the step keeps everything): the right one depends on your model.

    steps:
      history: {max_tokens: 2048, tokenizer: ~/models/SmolLM2-135M-Instruct, keep_first_turn: true}
"""
from __future__ import annotations

from pathlib import Path

from ..step import Drop, RecordStep


def split_turns(messages: list[dict]) -> tuple[list[dict], list[list[dict]]]:
    """(leading system messages, turns); a turn starts at a user message that follows a non-user one."""
    i = 0
    while i < len(messages) and messages[i]["role"] == "system":
        i += 1
    system, turns = messages[:i], []
    for m in messages[i:]:
        if not turns or (m["role"] == "user" and turns[-1][-1]["role"] != "user"):
            turns.append([])
        turns[-1].append(m)
    return system, turns


def tokenizer_problem(path: str) -> str | None:
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".json":
        return None
    if not p.is_dir():
        return f"tokenizer: {path!r} is not a local folder (this toolkit never downloads from a hub)"
    if not any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return f"tokenizer: {path!r} holds no tokenizer.json, tokenizer_config.json or tokenizer.model"
    return None


def load_token_counter(path: str):
    """A function: list of strings -> list of token counts (no special tokens)."""
    p = Path(path).expanduser()
    file = p if p.is_file() else p / "tokenizer.json"
    if file.exists():
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(file))
        return lambda texts: [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    return lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


class History(RecordStep):
    name = "history"
    defaults: dict = {
        "max_chars": 0,             # budget in characters of message contents (0: none)
        "max_tokens": 0,            # budget in tokens of `tokenizer` (0: none)
        "tokenizer": "",            # a local tokenizer folder or tokenizer.json file
        "keep_first_turn": False,   # also keep the first user turn and its reply when it fits
    }

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        out = [f"{k}: expected a non-negative integer, got {options[k]!r}"
               for k in ("max_chars", "max_tokens") if options[k] < 0]
        if options["max_tokens"] and not options["tokenizer"]:
            out.append("max_tokens needs tokenizer: a local tokenizer folder to count tokens with")
        if options["tokenizer"]:
            if not options["max_tokens"]:
                out.append("tokenizer is set but max_tokens is not: set the token budget")
            problem = tokenizer_problem(options["tokenizer"])
            if problem:
                out.append(problem)
        return out

    def __init__(self, options=None, ctx=None):
        super().__init__(options, ctx)
        self._count_tokens = None   # loaded on first use, in the worker process

    def sizes(self, messages: list[dict]) -> list[tuple[int, int]]:
        """(characters, tokens) per message; tokens are 0 without a token budget."""
        chars = [len(m["content"]) for m in messages]
        if not self.options["max_tokens"]:
            return [(c, 0) for c in chars]
        if self._count_tokens is None:
            self._count_tokens = load_token_counter(self.options["tokenizer"])
        return list(zip(chars, self._count_tokens([m["content"] for m in messages])))

    def fits(self, size: tuple[int, int]) -> bool:
        mc, mt = self.options["max_chars"], self.options["max_tokens"]
        return (not mc or size[0] <= mc) and (not mt or size[1] <= mt)

    def process(self, rec: dict) -> dict | Drop:
        if not rec["messages"] or not (self.options["max_chars"] or self.options["max_tokens"]):
            return rec
        system, turns = split_turns(rec["messages"])
        per_msg = iter(self.sizes(rec["messages"]))
        sys_size = _total(next(per_msg) for _ in system)
        turn_sizes = [_total(next(per_msg) for _ in t) for t in turns]
        if self.fits(_add(sys_size, *turn_sizes)):
            self.counts["within_budget"] += 1
            return rec
        need = _add(sys_size, turn_sizes[-1])
        if not self.fits(need):
            self.counts["last_turn_over_budget"] += 1
            return Drop("history:last_turn_over_budget",
                        f"system prompt + last turn = {need[0]} chars" + (f", {need[1]} tokens" if need[1] else "")
                        + f"; budget {self._budget()}")
        keep = {len(turns) - 1}
        if self.options["keep_first_turn"] and len(turns) > 1 and self.fits(_add(need, turn_sizes[0])):
            keep.add(0)
            need = _add(need, turn_sizes[0])
        for i in range(len(turns) - 2, 0 if 0 in keep else -1, -1):   # most recent first, contiguous
            if not self.fits(_add(need, turn_sizes[i])):
                break
            keep.add(i)
            need = _add(need, turn_sizes[i])
        dropped = [i for i in range(len(turns)) if i not in keep]
        gone = _add(*(turn_sizes[i] for i in dropped))
        info = {"dropped_turns": len(dropped), "dropped_messages": sum(len(turns[i]) for i in dropped),
                "dropped_chars": gone[0], "kept_turns": len(keep), "kept_first_turn": 0 in keep and len(turns) > 1}
        if self.options["max_tokens"]:
            info["dropped_tokens"] = gone[1]
        self.counts["trimmed"] += 1
        self.counts["dropped_turns"] += len(dropped)
        messages = system + [m for i, t in enumerate(turns) if i in keep for m in t]
        return {**rec, "messages": messages, "meta": {**rec["meta"], "history": info}}

    def _budget(self) -> str:
        parts = []
        if self.options["max_chars"]:
            parts.append(f"{self.options['max_chars']} chars")
        if self.options["max_tokens"]:
            parts.append(f"{self.options['max_tokens']} tokens")
        return " and ".join(parts)


def _total(sizes) -> tuple[int, int]:
    return _add(*sizes)


def _add(*sizes: tuple[int, int]) -> tuple[int, int]:
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes)
