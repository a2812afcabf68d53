"""Near-dedup building blocks: shingles right for Chinese, English and mixed text; the compiled
kernels equal to their plain-Python references and to datasketch's MinHash, permutations and LSH
parameters; LeanMinHash / MinHashLSH interplay; estimate vs exact Jaccard; own-part checks."""
from __future__ import annotations

import random
import unicodedata
from itertools import combinations

import numpy as np
import polars as pl
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from curate.dedup.candidates import candidate_pairs
from curate.dedup.clusters import components
from curate.dedup.kernels import jaccard, sorted_sets
from curate.dedup.shingles import (exact_hash, normalize, normalize_text, shingle_batch, shingle_hash, shingles,
                                   sketch_texts, tokens)
from curate.dedup.signatures import band_keys, lean_minhash, lsh_params, permutations
from curate.dedup.verify import _sides, different, own_rule


def minhash_batch(texts, num_perm, seed):
    return sketch_texts(texts, 3, 1, permutations(num_perm, seed))[3]

BASE_ZH = ("患者持续性胸痛，心电图ST段抬高，建议立即行冠状动脉造影检查。平时注意低盐低脂饮食，戒烟限酒，"
           "每日3次，每次10mg，按时服药。如果出现胸闷、气短加重，请及时到医院就诊，不要自行停药。")
BASE_EN = ("Regular exercise improves cardiovascular health, lowers blood pressure and helps control weight. "
           "Adults should aim for at least 150 minutes of moderate activity every week, spread over several days.")
MIXED = "我用Python 3.11写了一个脚本，调用OpenAI的API处理CSV文件，速度提升了10倍。"
ODD = ["", "。。。！", "a", "你", "𠀀𠀁𠀂 x😀y", "한국어 텍스트입니다", "カタカナとひらがな", "snake_case and ＣＡＭＥＬ"]


def edited(text: str, rate: float, rng: random.Random) -> str:
    chars = list(text)
    pool = list(set(BASE_ZH + BASE_EN))
    for _ in range(max(1, int(len(chars) * rate))):
        i = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.4:
            chars[i] = rng.choice(pool)
        elif op < 0.7:
            chars.insert(i, rng.choice(pool))
        else:
            del chars[i]
    return "".join(chars)


def test_table_normalization_equals_nfkc_and_lower_case():
    samples = [BASE_ZH, BASE_EN, MIXED, *ODD, "Ｈｅｌｌｏ　ＷＯＲＬＤ！①②③ ﬁ ㎏ ｶﾀｶﾅ Café e\u0301 İstanbul ẞ 한국 가"]
    for t in samples:
        assert normalize_text(t) == unicodedata.normalize("NFKC", t).lower()


def test_normalization_makes_width_case_and_spacing_vanish():
    a = normalize(["今天天气真好，我们去公园吧！Hello World"])[0]
    b = normalize(["今天天气真好,我们去公园吧!  ｈｅｌｌｏ　ｗｏｒｌｄ"])[0]
    assert tokens(a) == tokens(b) == ["今", "天", "天", "气", "真", "好", "我", "们", "去", "公", "园", "吧",
                                      "hello", "world"]
    assert exact_hash(tokens(a)) == exact_hash(tokens(b))


def test_script_aware_tokens_and_shingle_size():
    toks = tokens(normalize([MIXED])[0])
    assert toks[:5] == ["我", "用", "python", "3", "11"]          # words stay whole, 汉字 one by one
    assert shingles(tokens("你好世界"), 3, 1) == [("你", "好", "世"), ("好", "世", "界")]
    assert shingles(tokens("hello big world"), 3, 2) == [("hello", "big"), ("big", "world")]  # word n for English
    assert shingles(tokens("短"), 3, 1) == [("短",)]                 # shorter than n: one shingle


def test_vectorized_shingles_equal_the_reference():
    texts = [BASE_ZH, BASE_EN, MIXED, *ODD, edited(BASE_ZH, 0.05, random.Random(1)), "Café ﬁne ①② e\u0301 한글 ᄀ"]
    for n_cjk, n_word in ((3, 1), (5, 2), (2, 3)):
        hv, off, ex = shingle_batch(texts, n_cjk, n_word)
        for i, t in enumerate(texts):
            toks = tokens(normalize_text(t))
            assert hv[off[i]:off[i + 1]].tolist() == [shingle_hash(s) for s in shingles(toks, n_cjk, n_word)], t
            assert int(ex[i]) == exact_hash(toks)


def test_texts_read_from_polars_utf8_equal_texts_from_python_strings():
    texts = [BASE_ZH, BASE_EN, MIXED, *ODD, "e\u0301cole Ｅ\u0301", "\U0001F600" * 3, "\u00e9" * 2]
    from_list = sketch_texts(texts, 3, 1, permutations(32, 1))
    from_polars = sketch_texts(pl.Series(texts), 3, 1, permutations(32, 1))
    for a, b in zip(from_list, from_polars):
        np.testing.assert_array_equal(a, b)
    nulls = sketch_texts(pl.Series(["你好世界", None, ""]), 3, 1, permutations(32, 1))
    np.testing.assert_array_equal(nulls[1], sketch_texts(["你好世界", "", ""], 3, 1, permutations(32, 1))[1])


@pytest.mark.parametrize("num_perm,seed", [(128, 1), (64, 7)])
def test_signatures_equal_datasketch_minhash(num_perm, seed):
    rng = random.Random(seed)
    texts = [BASE_ZH, BASE_EN, MIXED, *ODD] + [edited(BASE_ZH, 0.03, rng) for _ in range(5)]
    sig = minhash_batch(texts, num_perm, seed)
    for i, t in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash)
        m.update_batch(shingles(tokens(normalize_text(t)), 3, 1))
        assert m.hashvalues.dtype == sig.dtype
        np.testing.assert_array_equal(m.hashvalues, sig[i])
        lean = lean_minhash(sig[i], seed)
        assert lean == LeanMinHash(m)                       # same seed, scheme and values


def _corpus(n_bases=40, copies=3, seed=0):
    rng = random.Random(seed)
    sents = [s for s in (BASE_ZH + BASE_EN).replace("。", "。|").replace(". ", ". |").split("|") if len(s) > 5]
    docs = []
    for _ in range(n_bases):
        base = "".join(rng.sample(sents, 3)) + str(rng.random())
        docs.append(base)
        docs += [edited(base, 0.02, rng) for _ in range(rng.randint(0, copies))]
    return docs


def test_lean_minhash_and_minhashlsh_find_what_our_bands_find():
    texts = _corpus()
    sig = minhash_batch(texts, 128, 1)
    b, r = lsh_params(0.5, 128)
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    assert (lsh.b, lsh.r) == (b, r)                           # bands and rows as datasketch chooses them
    for i in range(len(texts)):
        lsh.insert(str(i), lean_minhash(sig[i], 1))
    theirs = set()
    for i in range(len(texts)):
        theirs |= {tuple(sorted((i, int(j)))) for j in lsh.query(lean_minhash(sig[i], 1)) if int(j) != i}
    ours = set(map(tuple, candidate_pairs(band_keys([sig], b, r)).tolist()))
    # every pair we propose, MinHashLSH proposes too; where a bucket is big we give a star plus a
    # chain instead of every pair, which connects exactly the same records
    assert ours <= theirs and len(ours) > 20
    n = len(texts)
    as_array = lambda s: np.array(sorted(s), dtype=np.int64).reshape(-1, 2)
    np.testing.assert_array_equal(components(n, *as_array(ours).T), components(n, *as_array(theirs).T))


def test_jaccard_estimate_agrees_with_exact_within_minhash_error():
    rng = random.Random(3)
    num_perm = 128
    bases = [BASE_ZH, BASE_EN, BASE_ZH + BASE_EN]
    pairs = [(b, edited(b, rate, rng)) for b in bases for rate in (0.005, 0.02, 0.05, 0.1, 0.2, 0.4)]
    texts = [t for p in pairs for t in p]
    hv, off, _ = shingle_batch(texts, 3, 1)
    sig = minhash_batch(texts, num_perm, 1)
    errors, sigmas = [], []
    for k in range(len(pairs)):
        a, b = 2 * k, 2 * k + 1
        exact = jaccard(np.unique(hv[off[a]:off[a + 1]]), np.unique(hv[off[b]:off[b + 1]]))
        est = lean_minhash(sig[a], 1).jaccard(lean_minhash(sig[b], 1))
        sigma = (exact * (1 - exact) / num_perm) ** 0.5
        assert abs(est - exact) <= 4 * sigma + 1 / num_perm, (exact, est)
        errors.append(abs(est - exact))
        sigmas.append(sigma)
    assert min(e for e in [jaccard(np.unique(hv[off[0]:off[1]]), np.unique(hv[off[1]:off[2]]))]) > 0.9
    assert np.mean(errors) <= 1.5 * np.mean(sigmas) + 1 / num_perm   # the error is MinHash's, not more


def test_candidate_pairs_cap_big_buckets_linearly():
    keys = np.zeros((1000, 4), dtype=np.uint64)                 # one giant bucket in every band
    pairs = candidate_pairs(keys)
    assert len(pairs) < 2 * 1000                                # star + chain, not 499,500 pairs
    small = np.array([[1], [1], [1], [2]], dtype=np.uint64)
    assert sorted(map(tuple, candidate_pairs(small).tolist())) == list(combinations(range(3), 2))


def test_permutations_and_lsh_params_equal_datasketch():
    for num_perm, seed in ((128, 1), (64, 7), (256, 3)):
        a, b = MinHash(num_perm=num_perm, seed=seed).permutations
        ours = permutations(num_perm, seed)
        np.testing.assert_array_equal(ours[0], a)
        np.testing.assert_array_equal(ours[1], b)
    for num_perm in (64, 128):
        for t in [k / 20 for k in range(1, 20)] + [0.45 ** 2, 0.3 ** 2]:
            assert lsh_params(t, num_perm) == _optimal_param(t, num_perm, 0.5, 0.5), (t, num_perm)


def test_sorted_sets_and_ranks_equal_numpy_unique():
    texts = [BASE_ZH, BASE_EN, MIXED, *ODD, BASE_ZH + BASE_ZH]       # the last repeats every shingle
    hv, off, *_ = sketch_texts(texts, 3, 1, permutations(16, 1))
    vals, voff, rank = sorted_sets(hv, off)
    for i in range(len(texts)):
        seg = hv[off[i]:off[i + 1]]
        uniq = np.unique(seg)
        np.testing.assert_array_equal(vals[voff[i]:voff[i + 1]], uniq)
        np.testing.assert_array_equal(uniq[rank[off[i]:off[i + 1]]], seg)
        assert jaccard(uniq, uniq) == 1.0
    a, b = np.unique(hv[off[0]:off[1]]), np.unique(hv[off[-2]:off[-1]])
    assert jaccard(a, b) == len(set(a.tolist()) & set(b.tolist())) / len(set(a.tolist()) | set(b.tolist()))


def _pair(a: str, b: str):
    """Two texts as ``different`` takes them, through the real sketch (tokens, ranks, sentences)."""
    hv, off, _, _, n, cut, tok_off = sketch_texts([a, b], 3, 1, permutations(16, 1))
    vals, voff, rank = sorted_sets(hv, off)
    side = lambda i: (vals[voff[i]:voff[i + 1]], rank[off[i]:off[i + 1]], cut[tok_off[i]:tok_off[i + 1]], n[i])
    return (*side(0), *side(1))


def test_own_parts_tell_edits_from_content_of_its_own():
    shared_zh = "".join(BASE_ZH)
    rng = random.Random(5)
    own = own_rule(2)
    # edits, a dropped sentence, a repeated sentence: still one text
    assert not different(*_pair(BASE_ZH, edited(BASE_ZH, 0.03, rng)), own)
    assert not different(*_pair(BASE_EN, edited(BASE_EN, 0.02, rng)), own)
    dropped = BASE_ZH.replace("平时注意低盐低脂饮食，戒烟限酒，", "")
    assert not different(*_pair(BASE_ZH, dropped), own)
    assert not different(*_pair(BASE_ZH, BASE_ZH + "如果出现胸闷、气短加重，请及时到医院就诊，不要自行停药。"), own)
    # each adds a sentence of its own (Chinese; English with a two-word heading)
    assert different(*_pair("患者男，六十岁。" + shared_zh, shared_zh + "祝您早日康复！"), own)
    assert different(*_pair("Bottom screen. " + BASE_EN, "Then turn the Raspberry Pi on and log in. " + BASE_EN), own)
    # one says something else where the other has a long part: a start of its own against another
    other_start = "Leaving blue forever, I love programming, music, dancing, chess "
    assert different(*_pair("Shopping list " + BASE_EN, other_start + BASE_EN), own)
    assert not different(*_pair("Shopping " + BASE_EN, other_start + BASE_EN), own)   # one word: could be an edit
    # ... and the same pairs without the check are near-duplicates by Jaccard alone
    assert not different(*_pair("Bottom screen. " + BASE_EN, "Then turn the Raspberry Pi on and log in. " + BASE_EN),
                         own_rule(0))


def test_own_parts_on_synthetic_word_sequences():
    words = lambda *runs: np.concatenate([np.arange(*r) for r in runs]).astype(np.uint32)
    shared = (10, 40)
    own = own_rule(2)
    assert different(*_sides(words((900, 902), shared), words((500, 512), shared)), own)     # replaced start
    assert not different(*_sides(words((12, 40)), words((500, 512), shared)), own)           # b minus its start
    assert different(*_sides(words((900, 903), shared), words(shared, (500, 503))), own)     # own start vs own end
    assert not different(*_sides(words((10, 20), (700, 701), (21, 40)), words(shared)), own)  # one edited word


def test_own_heading_with_a_common_word_or_framing_the_shared_passage_is_not_a_copy():
    """The three unique records of the 100k benchmark corpus (seed 0) that the check used to lose:
    a heading of one text that contains a common word the other uses in the passage both share
    ("if", "the"), against the other's closing line; a one-word heading and closing tag around
    the shared passage, against the other's long start."""
    own = own_rule(2)
    ai = ("AI can also be used to analyze the tone and sentiment of a message to determine if it is likely to "
          "be harassing or abusive.")
    code = "if __name__ == '__main__': string_list = [\"one\",\"two\",\"three\",\"four\"] "
    assert different(*_pair(code + ai, ai + " Category 3: Samsung TVs it takes me to the heights of an angelic hum."),
                     own)
    metrics = ("Accuracy metrics, such as precision and recall, can be used to measure how accurately the algorithm "
               "classifies data, while running time metrics can be used to measure how quickly the algorithm "
               "processes data.")
    table = "The - article Ingredients: |          | Connectivity| Wired | Wireless | Both | "
    assert different(*_pair(table + metrics, metrics + " The room was quickly becoming engulfed in smoke. "
                                                       "Preheat oven to 375 degrees F."), own)
    cars = ("Additionally, electric cars have the potential to save drivers a significant amount of money in the "
            "long-run since they don't require gas or oil changes.")
    intro = ("- BCD (Buoyancy Control Device) Leaving blue forever - Azouz, F. I love programming, and music. "
             "-Savings: $1000 ")
    assert different(*_pair("Ingredients: " + cars + " #HBinfluencers", intro + cars), own)
    # (seed 1) a heading whose only shared words are common ones, where the other has a start of its
    # own: no anchor before it, so "where" runs from the texts' starts
    frost = ("The main idea of Robert Frost's \"Stopping By Woods on a Snowy Evening\" is that although the world "
             "may be chaotic and dark, there is beauty and peace to be found in moments of solitude.")
    assert different(*_pair("- Summary of the important points discussed - 2 tablespoons vegan pesto " + frost,
                            "No, Pluto is not considered a planet in the Solar System. Watching over us with a loving "
                            "will. " + frost + " - Line up staffing and volunteers"), own)
    # ... while copies stay copies: one word at one edge could be an edit, and so could a common
    # word where the other text has its own start too (an edit leaves a token of its own in both)
    assert not different(*_pair("Ingredients: " + cars, intro + cars), own)
    assert not different(*_pair(code + ai, code.replace("four", "fuor") + ai + " Angelic hum."), own)
    rng = random.Random(7)
    for _ in range(20):
        assert not different(*_pair(code + ai, edited(code + ai, 0.03, rng)), own)


def test_edge_parts_on_synthetic_word_sequences():
    words = lambda *runs: np.concatenate([np.arange(*r) for r in runs]).astype(np.uint32)
    shared = (10, 40)
    own = own_rule(2)
    # a start of 7 words whose first (word 25) b has only inside the shared part, against b's own end
    assert different(*_sides(words((25, 26), (900, 906), shared), words(shared, (500, 503))), own)
    assert not different(*_sides(words((25, 26), (900, 906), shared), words(shared, (500, 502))), own)  # 2 words
    # one word at each end of the shared part, against a long start of b's own
    assert different(*_sides(words((900, 901), shared, (901, 902)), words((500, 510), shared)), own)
    assert not different(*_sides(words((900, 901), shared), words((500, 510), shared)), own)
    assert not different(*_sides(words((900, 901), shared, (901, 902)), words((500, 501), shared, (501, 502))), own)
    # 7 own words after a common word (20: in the shared part and in b's own start too), where b has
    # 16 of its own: no anchor before them, so "where" runs from the texts' starts
    assert different(*_sides(words((900, 901), (20, 21), (901, 908), shared),
                             words((500, 505), (20, 21), (505, 516), shared)), own)


def test_compiled_kernels_refuse_wrong_arrays_and_a_stale_build(monkeypatch):
    from curate.dedup import _kernels, kernels
    hv = np.arange(10, dtype=np.uint32)
    off, docs, start = np.array([0, 10]), np.array([0]), np.array([0])
    vals_end = np.zeros(1, np.int64)
    with pytest.raises(TypeError, match="argument 5 has 8-byte items, expected 4"):    # an output of the wrong type
        kernels.sorted_sets_into(hv, off, docs, start, np.empty(10, np.uint64), vals_end, np.empty(10, np.uint32))
    with pytest.raises((BufferError, ValueError)):                                       # never a silent copy of an output
        kernels.sorted_sets_into(hv, off, docs, start, np.empty(20, np.uint32)[::2], vals_end, np.empty(10, np.uint32))
    with pytest.raises(ValueError, match="sizes"):
        kernels.band_keys(np.zeros((1, 2, 8), np.uint32), 4, 4)                          # 4 bands x 4 rows > 8
    monkeypatch.setattr(_kernels, "SOURCE_DIGEST", "0" * 16)
    with pytest.raises(ImportError, match="make install"):                              # C edited since the build
        kernels._check_build()
