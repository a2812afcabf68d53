"""Reading raw inputs: encodings, shapes, malformed lines and broken JSON arrays (curate/reading.py)."""
from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path

import pytest

from curate.reading import SourceSpec, detect_encoding, expand_inputs, read_source

MEDICAL = "medical_dialogue/internal_medicine_5000-6000.gb18030.csv"
CSV_TEXT = ("question,answer,task\n"
            "高血压可以吃党参吗？,可以适量服用，注意监测血压。,心血管科\n"
            "\"头痛, 发热怎么办\",\"多喝水，休息；持续发热请就医。\",神经科\n"
            "What is NFKC?,A Unicode normalization form.,general\n")


def read_all(path, **kw):
    recs, rejs = [], []
    for rec, rej in read_source(SourceSpec(str(path), **kw)):
        (recs if rec is not None else rejs).append(rec if rec is not None else rej)
    return recs, rejs


@pytest.mark.parametrize("encoding,bom", [("utf-8", b""), ("utf-8", codecs.BOM_UTF8), ("gb18030", b""),
                                          ("utf-16", b""), ("utf-16-le", b""), ("utf-16-be", b"")])
def test_same_csv_in_every_encoding_reads_the_same(tmp_path, encoding, bom):
    reference = tmp_path / "ref.csv"
    reference.write_text(CSV_TEXT, encoding="utf-8")
    path = tmp_path / f"qa.{encoding}.csv"
    path.write_bytes(bom + CSV_TEXT.encode(encoding))
    expected = {"utf-16": "utf-16", "utf-8": "utf-8-sig" if bom else "utf-8"}.get(encoding, encoding)
    assert detect_encoding(str(path)) == expected
    got, rejects = read_all(path)
    want, _ = read_all(reference)
    assert rejects == []
    assert [(r["messages"], r["task"]) for r in got] == [(r["messages"], r["task"]) for r in want]
    assert got[1]["messages"][0]["content"] == "头痛, 发热怎么办"   # quoted comma kept, no BOM in header


def test_real_gb18030_medical_csv(shared_data):
    path = shared_data / MEDICAL
    rows = list(csv.DictReader(io.StringIO(path.read_bytes().decode("gb18030"))))
    recs, rejects = read_all(path, mapping={"user": "ask", "assistant": "answer", "task": "department"})
    assert rejects == [] and len(recs) == len(rows) == 7644
    for i in (0, 1234, len(rows) - 1):
        assert recs[i]["messages"] == [{"role": "user", "content": rows[i]["ask"].strip()},
                                       {"role": "assistant", "content": rows[i]["answer"].strip()}]
        assert recs[i]["task"] == rows[i]["department"]
    assert {r["task"] for r in recs} == {r["department"] for r in rows}


def test_one_corrupt_byte_rejects_only_its_line(tmp_path):
    # Earlier the whole file went to charset-normalizer and every record came out as Cyrillic.
    path = tmp_path / "qa.jsonl"
    path.write_bytes(b'{"question": "\xe4\xbd\xa0\xe5\xa5\xbd", "answer": "\xe5\xa5\xbd\xe7\x9a\x84"}\n'
                     b'{"question": "bad \xff\xfe bytes", "answer": "x"}\n'
                     b'{"question": "\xe5\x86\x8d\xe8\xa7\x81", "answer": "\xe6\x8b\x9c\xe6\x8b\x9c"}\n')
    recs, rejects = read_all(path)
    assert [r["messages"][0]["content"] for r in recs] == ["你好", "再见"]
    assert len(rejects) == 1 and rejects[0]["reason"] == "malformed:encoding"
    assert rejects[0]["detail"].startswith(f"{path}:2:")
    assert "\\xff\\xfe" in rejects[0]["meta"]["raw"]   # the bad bytes are kept, escaped


def test_little_chinese_and_a_few_corrupt_bytes_stay_utf8_while_8_bit_text_does_not(tmp_path):
    # Mostly English with one short Chinese line: too few valid multi-byte characters to outweigh
    # the corrupt bytes 3 to 1, and earlier the guesser then read the whole file as cp855.
    lines = [json.dumps({"question": f"What helps blood pressure, case {i}?", "answer": "Less salt."}) for i in range(40)]
    lines[5] = json.dumps({"question": "血压", "answer": "少盐"}, ensure_ascii=False)
    data = ("\n".join(lines) + "\n").encode("utf-8").replace(b"case 9?", b"case 9\xff?").replace(b"case 20?", b"case\xfe 20?")
    path = tmp_path / "mostly_en.jsonl"
    path.write_bytes(data)
    assert detect_encoding(str(path)) == "utf-8"
    recs, rejects = read_all(path)
    assert len(recs) == 38 and recs[5]["messages"][0]["content"] == "血压"
    assert sorted(r["detail"].split(": ")[0] for r in rejects) == [f"{path}:10", f"{path}:21"]
    # ... while text in an 8-bit code page (no valid 3-byte UTF-8 sequence) still goes to the guesser
    russian = [json.dumps({"question": f"Что снижает давление, случай {i}?", "answer": "Меньше соли."},
                          ensure_ascii=False) for i in range(40)]
    path = tmp_path / "ru.jsonl"
    path.write_bytes(("\n".join(russian) + "\n").encode("cp1251"))
    assert detect_encoding(str(path)) != "utf-8"    # (charset-normalizer's pick: mac_cyrillic, not cp1251)
    recs, rejects = read_all(path)
    assert rejects == [] and "снижает давление, случай 7?" in recs[7]["messages"][0]["content"]


def test_lone_surrogate_escape_rejects_its_record_and_the_run_goes_on(tmp_path):
    # A JSON escape of half an emoji ("\ud83d", left by a truncation) parses to a string no UTF-8
    # writer takes: it used to pass reading and crash the whole run when the part was written.
    from curate.schema import to_frame
    lines = ['{"id": "a", "text": "体温38.5度 \\ud83d\\ude00"}',     # a whole pair: one emoji, kept
             '{"id": "b", "text": "发热三天，建议就医 \\ud83d"}',       # half of one
             '{"id": "c", "messages": [{"role": "user", "content": "hi \\udc00"}, {"role": "assistant", "content": "ok"}]}',
             '{"id": "d", "text": "多喝水"}']
    path = tmp_path / "cut.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recs, rejects = read_all(path)
    assert [r["id"] for r in recs] == ["a", "d"] and recs[0]["text"] == "体温38.5度 😀"
    assert [r["reason"] for r in rejects] == ["malformed:encoding"] * 2
    assert rejects[0]["detail"] == f"{path}:2: lone surrogate \\ud83d from a JSON escape (not Unicode: half of a cut emoji?)"
    assert json.loads(rejects[1]["meta"]["raw"])["messages"][0]["content"] == "hi \udc00"   # kept, as ASCII JSON
    assert to_frame(recs).height == 2
    arr = tmp_path / "cut.json"                                            # a JSON array: the same
    arr.write_text("[\n" + ",\n".join(lines) + "\n]", encoding="utf-8")
    recs, rejects = read_all(arr)
    assert [r["id"] for r in recs] == ["a", "d"] and [r["detail"].split(": ")[0] for r in rejects] == [f"{arr}:3", f"{arr}:4"]


def test_malformed_jsonl_line_rejected_with_file_and_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    good = {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好！"}]}
    path.write_text(json.dumps(good, ensure_ascii=False) + "\n" + '{"messages": [{"role": "user", "content": "断了\n'
                    + "\n" + json.dumps(good, ensure_ascii=False) + "\n", encoding="utf-8")
    recs, rejects = read_all(path)
    assert len(recs) == 2 and len(rejects) == 1
    assert rejects[0]["reason"] == "malformed:json" and rejects[0]["detail"].startswith(f"{path}:2:")
    assert rejects[0]["meta"]["raw"].startswith('{"messages": [{"role": "user", "content": "断了')


def test_json_array_broken_part_way_keeps_what_came_before(tmp_path, shared_data):
    records = json.loads((shared_data / "alpaca_zh/alpaca_zh_00000-03252.json").read_text(encoding="utf-8"))[:40]
    text = json.dumps(records, ensure_ascii=False, indent=4)
    start = text.index(json.dumps(records[30]["instruction"], ensure_ascii=False))
    start = text.rindex("{", 0, start)                     # where record 31 begins
    cut = start + (text.index("}", start) - start) // 2     # truncate it mid-object
    path = tmp_path / "broken.json"
    path.write_text(text[:cut], encoding="utf-8")
    recs, rejects = read_all(path)
    assert len(recs) == 30
    assert [r["messages"][-1]["content"] for r in recs] == [r["output"] for r in records[:30]]
    assert len(rejects) == 1 and rejects[0]["reason"] == "malformed:json"
    line = text.count("\n", 0, start) + 1
    assert rejects[0]["detail"].startswith(f"{path}:{line}: the JSON array breaks")
    assert rejects[0]["meta"]["raw"] == text[start:cut].strip()   # the rest, whole


def test_real_partial_alpaca_file_is_read_to_its_last_record(shared_data):
    # It ends with a trailing comma before "]" (json.load fails at line 14007): every record is intact.
    path = shared_data / "alpaca_zh/alpaca_zh_09407-12345.partial.json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text(encoding="utf-8"))
    recs, rejects = read_all(path)
    assert rejects == []
    assert len(recs) == path.read_text(encoding="utf-8").count('"instruction":')
    assert recs[-1]["messages"][0]["content"] == "描述第一类错误和第二类错误的区别。"


def test_shapes_detected(tmp_path):
    rows = [
        {"instruction": "翻译", "input": "hello", "output": "你好", "system": "你是翻译。",
         "history": [["早上好", "Good morning"]]},
        {"conversations": [{"from": "human", "value": "嗯"}, {"from": "gpt", "value": "好"}], "id": "sg-1"},
        {"messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"}]},
        {"text": "一篇文档。"},
        {"问题": "发烧怎么办", "答案": "多喝水"},
        {"foo": 1},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    recs, rejects = read_all(path)
    assert [r["meta"]["format"] for r in recs] == ["alpaca", "sharegpt", "messages", "text", "columns"]
    assert recs[0]["messages"] == [{"role": "system", "content": "你是翻译。"}, {"role": "user", "content": "早上好"},
                                   {"role": "assistant", "content": "Good morning"},
                                   {"role": "user", "content": "翻译\nhello"}, {"role": "assistant", "content": "你好"}]
    assert recs[1]["id"] == "sg-1" and recs[2]["messages"][0]["role"] == "system"
    assert recs[3]["text"] == "一篇文档。" and recs[4]["messages"][1]["content"] == "多喝水"
    assert len(rejects) == 1 and rejects[0]["reason"] == "malformed:record" and ":6:" in rejects[0]["detail"]


def test_folders_and_globs(tmp_path, shared_data):
    files = expand_inputs([str(shared_data / "alpaca_zh")])
    assert len(files) == 6 and all(f.endswith(".json") for f in files)
    assert expand_inputs([str(shared_data / "alpaca_zh" / "*partial*")]) == [files[3]]
