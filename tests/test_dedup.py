"""The dedup step and `curate dedup` on real inputs: SFT records compared by prompt AND answer,
documents by whole text, keep policies, the own-part check, incremental dedup with a persisted
index, the command's outputs, and accuracy on the shared benchmark corpus."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main as curate_main
from curate.dedup.step import Dedup
from curate.schema import make_record, to_frame
from curate.step import Context, Table

TEMPLATE = ("你是一名经验丰富的全科医生。请根据患者的描述，用通俗易懂的中文给出诊断思路、需要做的检查、"
            "用药建议和生活注意事项。回答要条理清楚，不要编造不存在的药物，必要时建议患者线下就医。患者描述：")
SYMPTOMS = ["头痛", "咳嗽", "发热", "腹泻", "失眠", "胸闷", "腰痛", "皮疹", "便秘", "耳鸣"]
SENTENCES = [
    "建议先到医院做血常规和肝功能检查，明确病因后再用药。", "平时注意低盐低脂饮食，戒烟限酒，保证充足睡眠。",
    "如果症状持续超过一周或者明显加重，请及时到医院就诊。", "可以在医生指导下短期服用布洛芬缓解疼痛，每日不超过三次。",
    "多喝温水，适当运动，避免熬夜和过度劳累。", "注意观察体温变化，超过三十八度五可以物理降温。",
    "饮食上多吃蔬菜水果，少吃辛辣刺激和油腻的食物。", "保持心情舒畅，避免精神紧张，必要时可以寻求心理咨询。",
]


def sft(rid, prompt, answer, **meta):
    return make_record(rid, "t.jsonl", messages=[{"role": "user", "content": prompt},
                                                 {"role": "assistant", "content": answer}], meta=meta)


def doc(rid, text):
    return make_record(rid, "t.jsonl", text=text)


CHARS = sorted(set("".join(SENTENCES) + TEMPLATE) - set("，。：、？"))


def distinct_answer(i: int) -> str:
    """An answer of its own: 120 characters drawn from the medical sentences' inventory."""
    rng = random.Random(i)
    return "。".join("".join(rng.choice(CHARS) for _ in range(30)) for _ in range(4)) + "。"


def edit(text: str, rng: random.Random, n: int = 3) -> str:
    chars = list(text)
    for _ in range(n):
        chars[rng.randrange(len(chars))] = rng.choice("的了是在有和人这中大为上个国")
    return "".join(chars)


def run_step(records, tmp_path, **options) -> tuple[dict, Dedup]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    parts = []
    for k in range(0, len(records), 300):                # several parts, as the runner writes them
        p = tmp_path / f"part{k:05d}.parquet"
        to_frame(records[k:k + 300]).write_parquet(p)
        parts.append(p)
    step = Dedup({"workers": 1, **options}, Context(work_dir=tmp_path / "work", show_progress=False))
    return dict(step.select(Table(parts))), step


def test_shared_template_with_distinct_answers_all_stay(tmp_path):
    records = [sft(f"r{i}", TEMPLATE + SYMPTOMS[i % 10] + "三天了怎么办？", distinct_answer(i)) for i in range(1000)]
    drops, step = run_step(records, tmp_path)
    assert drops == {}
    # ... while a real near-copy (same prompt, answer with a few characters changed) goes
    rng = random.Random(0)
    copies = [sft(f"c{i}", records[i]["messages"][0]["content"], edit(records[i]["messages"][1]["content"], rng))
              for i in range(0, 1000, 100)]
    drops, _ = run_step(records + copies, tmp_path / "again")
    assert set(drops) == {c["id"] for c in copies}
    for c in copies:
        d = drops[c["id"]]
        assert d.reason == "duplicate:near" and d.duplicate_of == "r" + c["id"][1:] and d.similarity >= 0.55


def test_same_stock_answer_to_different_questions_all_stay(tmp_path):
    records = [sft(f"r{i}", distinct_answer(5000 + i)[:60] + "？", "好的，建议您先去全科门诊就诊。") for i in range(200)]
    drops, _ = run_step(records, tmp_path)
    assert drops == {}


def test_documents_near_and_exact_copies_and_no_cluster_lost(tmp_path):
    rng = random.Random(1)
    bases = [distinct_answer(i) + SENTENCES[i % 8] for i in range(30)]
    records, cluster = [], {}
    for i, b in enumerate(bases):
        records.append(doc(f"b{i}", b))
        cluster[f"b{i}"] = i
        for j in range(i % 3):
            noisy = edit(b, rng).replace("，", ",") + "  "
            records.append(doc(f"b{i}n{j}", noisy))
            cluster[f"b{i}n{j}"] = i
    records.append(doc("exact", bases[0].replace("。", ". ")))    # same text after normalization
    cluster["exact"] = 0
    drops, step = run_step(records, tmp_path)
    assert drops["exact"].reason == "duplicate:exact" and drops["exact"].duplicate_of == "b0"
    assert drops["exact"].similarity == 1.0
    kept = {r["id"] for r in records} - set(drops)
    assert {cluster[k] for k in kept} == set(range(30))            # every cluster keeps a member
    assert {k for k in kept} == {f"b{i}" for i in range(30)}       # and only one: the first seen
    for rid, d in drops.items():
        assert cluster[d.duplicate_of] == cluster[rid] and d.duplicate_of in kept
    rep = step.report
    assert rep["removed"] == {"exact": 1, "near": len(drops) - 1}
    assert rep["cluster_sizes"]["1"] == 9 and sum(rep["cluster_sizes"].values()) == 30   # b0 has its exact copy
    big = rep["largest_clusters"][0]
    assert big["size"] >= 3 and big["kept"]["text"] and big["removed"][0]["similarity"] > 0.55


def test_keep_policies(tmp_path):
    base = "".join(SENTENCES[:5])
    records = [sft("a", "头痛怎么办", base, quality=0.2), sft("b", "头痛怎么办？", base + "祝您早日康复。", quality=0.1),
               sft("c", "头痛怎么办!", edit(base, random.Random(2), 2), quality=0.9)]
    expect = {"first": "a", "longest": "b", "quality": "c"}
    for policy, winner in expect.items():
        drops, _ = run_step(records, tmp_path / policy, keep=policy)
        assert set(drops) == {"a", "b", "c"} - {winner}, policy
        assert all(d.duplicate_of == winner for d in drops.values())


def test_shared_passage_with_parts_of_their_own_is_not_a_duplicate_but_a_dropped_sentence_is(tmp_path):
    shared = "".join(SENTENCES[:6])
    a = doc("a", "这位患者三年前做过胆囊切除手术，" + shared + "术后恢复良好没有并发症。")
    b = doc("b", "另一位患者有二十年的高血压病史，" + shared + "近期血压控制得不太理想。")
    c = doc("c", "这位患者三年前做过胆囊切除手术，" + "".join(SENTENCES[:5]) + "术后恢复良好没有并发症。")
    drops, step = run_step([a, b, c], tmp_path, threshold=0.5)
    assert set(drops) == {"c"} and drops["c"].duplicate_of == "a"
    assert step.report["rejected_by_own_part_check"] >= 1
    drops, _ = run_step([a, b, c], tmp_path / "off", threshold=0.5, own=0)
    assert "b" in drops                                            # plain Jaccard would merge them


def test_incremental_dedup_against_an_earlier_curated_set(tmp_path):
    index = str(tmp_path / "index")
    rng = random.Random(5)
    first = [doc(f"old{i}", distinct_answer(i) + SENTENCES[i % 8]) for i in range(40)]
    drops, _ = run_step(first, tmp_path / "run1", index=index)
    assert drops == {}
    second = [doc(f"new{i}", edit(first[i]["text"], rng)) for i in range(10)]        # copies of old ones
    second += [doc(f"fresh{i}", distinct_answer(100 + i)) for i in range(5)]
    drops, step = run_step(second, tmp_path / "run2", index=index, memory_mb=0)   # a spill on disk joins the index too
    assert set(drops) == {f"new{i}" for i in range(10)}
    assert all(drops[f"new{i}"].duplicate_of == f"old{i}" for i in range(10))
    assert step.report["settings"]["index_records"] == 40
    # re-running the same batch (say, after a crash) does not see it as a copy of itself
    drops_again, _ = run_step(second, tmp_path / "run2b", index=index)
    assert drops_again == drops
    # an index built with other settings is refused before any work, with the reason
    problems = Dedup.problems({**Dedup.defaults, "index": index, "n_cjk": 5})
    assert problems and "n_cjk" in problems[0]


def test_two_workers_give_the_same_result(tmp_path):
    rng = random.Random(9)
    records = []
    for i in range(150):
        t = distinct_answer(i)
        records.append(doc(f"d{i}", t))
        if i % 4 == 0:
            records.append(doc(f"d{i}x", edit(t, rng)))
    one, _ = run_step(records, tmp_path / "one")
    two, _ = run_step(records, tmp_path / "two", workers=2, batch_size=100)
    assert one == two and len(one) == len(range(0, 150, 4))
    # no memory for the spill: every batch waits on disk, same result
    on_disk, _ = run_step(records, tmp_path / "disk", workers=2, batch_size=100, memory_mb=0)
    assert on_disk == one
    assert sorted(p.name for p in (tmp_path / "disk" / "work" / "spill").glob("b00000.*"))[:2] == \
        ["b00000.f0.cut.npy", "b00000.f0.hv.npy"]


def test_curate_dedup_command(tmp_path):
    rng = random.Random(4)
    rows = []
    for i in range(60):
        base = distinct_answer(i) + SENTENCES[i % 8]
        rows.append({"id": f"q{i}", "instruction": TEMPLATE + SYMPTOMS[i % 10], "output": base})
        if i % 5 == 0:
            rows.append({"id": f"q{i}-dup", "instruction": TEMPLATE + SYMPTOMS[i % 10], "output": edit(base, rng)})
    src = tmp_path / "sft.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{broken\n", encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(curate_main, ["dedup", "--input", str(src), "--out", str(out), "--workers", "1",
                                           "--memory-mb", "0", "--no-progress"])          # the spill on disk
    assert res.exit_code == 0, res.output
    kept = pl.read_parquet(out / "curated.parquet")
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert kept.height + rejects.height == len(rows) + 1
    dups = rejects.filter(pl.col("stage") == "dedup")
    assert sorted(dups["id"].to_list()) == sorted(f"q{i}-dup" for i in range(0, 60, 5))   # input ids kept
    assert dups["duplicate_of"].to_list() == [i.removesuffix("-dup") for i in dups["id"].to_list()]
    assert dups["similarity"].min() >= 0.55
    assert all(s == round(s, 4) for s in dups["similarity"].to_list())      # 4 decimals, no float32 noise
    assert rejects.filter(pl.col("stage") == "read").height == 1                          # the broken line
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    d = report["step_report"]["dedup"]
    assert d["removed"]["near"] == 12 and d["cluster_sizes"]["2"] == 12 and d["largest_clusters"]
    by_id = {r["id"]: r for r in rows}
    for cluster in d["largest_clusters"]:            # examples show each record's answer, as written
        for shown in [cluster["kept"], *cluster["removed"]]:
            assert shown["text"] and by_id[shown["id"]]["output"].startswith(shown["text"])
    assert "dedup" in (out / "report.html").read_text(encoding="utf-8")
    assert (out / "manifest.json").exists()
    bad = CliRunner().invoke(curate_main, ["dedup", "--input", str(src), "--out", str(out), "--threshold", "2",
                                           "--fields", "question"])
    assert bad.exit_code != 0 and "threshold" in bad.output and "fields" in bad.output


def test_accuracy_on_the_benchmark_corpus(tmp_path, shared_bench):
    corpus = tmp_path / "corpus.jsonl"
    subprocess.run([sys.executable, str(shared_bench / "make_dedup_corpus.py"), "4000", str(corpus), "--seed", "1"],
                   check=True)
    frame = pl.read_ndjson(corpus)
    records = [doc(r["id"], r["text"]) for r in frame.iter_rows(named=True)]
    drops, _ = run_step(records, tmp_path / "run")
    kept_file = tmp_path / "kept.txt"
    kept_file.write_text("\n".join(r["id"] for r in records if r["id"] not in drops), encoding="utf-8")
    score = json.loads(subprocess.run([sys.executable, str(shared_bench / "score_dedup.py"), str(corpus), str(kept_file)],
                                      check=True, capture_output=True, text=True).stdout)
    assert score["precision"] >= 0.995 and score["recall"] >= 0.9, score
    assert score["lost_clusters"] == 0, score                     # 1 with the own-part check off


def test_empty_table_and_punctuation_only_texts(tmp_path):
    step = Dedup({"workers": 1}, Context(work_dir=tmp_path / "work", show_progress=False))
    assert list(step.select(Table([]))) == []                       # an earlier step dropped everything
    drops, _ = run_step([doc("a", "。。。"), doc("b", "！！"), doc("c", "正常的一句话。")], tmp_path / "p")
    assert set(drops) == {"b"} and drops["b"].reason == "duplicate:exact"   # nothing but punctuation: the same empty text


def test_records_that_share_a_sentence_but_each_add_their_own_all_stay(tmp_path):
    """The cases that made earlier engines lose unique records: texts built around the same long
    sentence, each with a short part of its own (a heading, a closing line), Chinese and English."""
    long_zh = "".join(SENTENCES[:3])
    long_en = ("The three cities in the United States with population over one million are New York City, "
               "Los Angeles, and Chicago, and each of them has a large public transport network.")
    records = [doc("zh1", "患者今年六十岁。" + long_zh), doc("zh2", long_zh + "曾经救治过吗？"),
               doc("zh3", "有助于厌氧菌生长。" + long_zh + "祝您早日康复！"),
               doc("en1", "Bottom screen. " + long_en), doc("en2", "Then turn the Raspberry Pi on and log in. " + long_en),
               doc("en3", long_en + " Serve and enjoy!")]
    rng = random.Random(3)
    records += [doc("zh1-copy", edit(records[0]["text"], rng, 2)),                # real copies still go
                doc("en3-copy", records[5]["text"].replace("public", "pubic"))]
    drops, step = run_step(records, tmp_path)
    assert set(drops) == {"zh1-copy", "en3-copy"}, drops
    assert drops["zh1-copy"].duplicate_of == "zh1" and drops["en3-copy"].duplicate_of == "en3"
    assert step.report["rejected_by_own_part_check"] >= 4
    drops, _ = run_step(records, tmp_path / "off", own=0)                     # Jaccard alone merges them
    assert len(drops) >= 5
