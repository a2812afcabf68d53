"""Chinese vocabulary expansion (``curate vocab``): learn a corpus's Chinese pieces and merge them
into a base tokenizer so Chinese reads in far fewer tokens, while every other text keeps its ids.

    from curate.vocab import expand_vocab
    report = expand_vocab(["medical.csv"], "zh-tok", mapping="user=ask,assistant=answer", size=20000)

Modules: corpus (inputs, held-out split, which characters are Chinese), train (the domain BPE),
bytelevel (merging into GPT-2-style byte-level BPE), spm (merging into a sentencepiece proto),
report (measurements and the readable summary), expand (the whole run).
"""
from .expand import DEFAULTS, REPORT_NAME, VocabError, expand_vocab

__all__ = ["expand_vocab", "VocabError", "DEFAULTS", "REPORT_NAME"]
