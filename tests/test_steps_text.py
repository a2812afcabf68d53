"""The per-record text steps of `curate run`: normalize, language, fillers, safety, quality.

Chinese cases first; the real corpora in ../shared/data check that the defaults do not wreck
real data (they skip where it is absent)."""
from __future__ import annotations

import glob

import pytest

from curate.config import ConfigError, load_config
from curate.reading import SourceSpec, read_source
from curate.schema import make_record
from curate.step import Drop
from curate.steps.fillers import Fillers
from curate.steps.language import Language
from curate.steps.normalize import Normalize
from curate.steps.quality import Quality, repeated_ngram_ratio
from curate.steps.safety import Safety, id_card_valid, luhn_valid

MEDICAL = "medical_dialogue/internal_medicine_5000-6000.gb18030.csv"


def qa(q: str, a: str, task: str = "", lang: str = "", system: str | None = None) -> dict:
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return make_record("r1", "t.jsonl", messages=msgs, task=task, lang=lang)


def gb11643(first17: str) -> str:
    """A resident ID number with its check digit, computed here independently of the step."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights)) % 11]


def with_luhn(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


# -- normalize --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("患者持续性胸痛,心电图ST段抬高 (急性)?", "患者持续性胸痛，心电图ST段抬高（急性）？"),
    ("我很好.你呢??", "我很好。你呢？？"),
    ("血糖7.8mmol/L.", "血糖7.8mmol/L。"),                       # a unit ends a Chinese sentence
    ("每次20mg,2023年10月1日", "每次20mg，2023年10月1日"),          # inside a Chinese sentence
    ("每日3次，每次10mg", "每日3次，每次10mg"),                      # already right: untouched
    ("价格1,000元，时间10:30", "价格1,000元，时间10:30"),          # numbers keep ASCII marks
    ("Hello，world！", "Hello,world!"),                           # English text: ASCII marks
    ("def f（x）：\n    return x", "def f(x):\n    return x"),      # code: ASCII, indentation kept
    ("访问https://example.com/a?b=1,c=2了解更多,谢谢", "访问https://example.com/a?b=1,c=2了解更多，谢谢"),
    ("邮箱a.b@x.com,电话", "邮箱a.b@x.com，电话"),
])
def test_chinese_punctuation_policy(raw, clean):
    assert Normalize().clean(raw) == clean


@pytest.mark.parametrize("raw, clean", [
    ("ＡＢＣ１２３，测试", "ABC123，测试"),            # full-width letters and digits: NFKC
    ("剂量5㎎，体温38℃", "剂量5mg，体温38°C"),
    ("白细胞5.2×10⁹/L，体表面积1.7m²", "白细胞5.2×10⁹/L，体表面积1.7m²"),   # NFKC would say 109/L and m2
    ("好的……", "好的……"),                                              # and ......
    ("步骤①②", "步骤①②"),
])
def test_nfkc_only_where_safe(raw, clean):
    assert Normalize().clean(raw) == clean


def test_whitespace_and_control_characters():
    n = Normalize()
    assert n.clean("\u200b你好\r\n\r\n\r\n\r\n世界  ！ \x00") == "你好\n\n世界！"
    assert n.clean("x = 1  \n    return  x") == "x = 1\n    return x"       # indentation survives
    assert n.clean("床前 明月光") == "床前 明月光"                            # a poem's space stays...
    assert Normalize({"cjk_spaces": True}).clean("床前 明月光") == "床前明月光"   # ...unless asked
    assert n.clean("&lt;b&gt; 三高&amp;") == "<b> 三高&"


def test_scaffolding_stripped_and_template_applied_once():
    rec = qa("### Instruction:\n把下面的句子翻译成英文\n\n### Input:\n你好\n\n### Response:", "答：Hello", task="翻译")
    n = Normalize({"templates": {"default": "{prompt}", "翻译": "任务：{task}\n{prompt}"}})
    out = n.process(rec)
    assert out["messages"][0]["content"] == "任务：翻译\n把下面的句子翻译成英文\n你好"
    assert out["messages"][1]["content"] == "Hello"
    assert out["meta"]["normalized"] == ["scaffolding", "template"]
    again = n.process(out)                                  # a record already in its template
    assert again["messages"][0]["content"] == "任务：翻译\n把下面的句子翻译成英文\n你好"
    assert n.counts["template"] == 1
    # An answer letter is content, not scaffolding; an untemplated task gets the default.
    mcq = Normalize().process(qa("问：青霉素属于哪类药？A. 抗生素 B. 降压药", "答案：A", task="考试"))
    assert [m["content"] for m in mcq["messages"]] == ["青霉素属于哪类药？A. 抗生素 B. 降压药", "答案：A"]
    heading = Normalize().process(qa("## 问题分析\n头疼的原因有哪些？", "多为紧张性头痛。"))
    assert heading["messages"][0]["content"] == "## 问题分析\n头疼的原因有哪些？"   # a heading, not scaffolding
    chat = Normalize().process(qa("<|im_start|>user\n头疼怎么办<|im_end|>", "多休息"))
    assert chat["messages"][0]["content"] == "头疼怎么办"


def test_normalize_works_on_plain_documents():
    doc = make_record("d1", "t.jsonl", text="患者持续性胸痛,伴大汗  ")
    out = Normalize().process(doc)
    assert out["text"] == "患者持续性胸痛，伴大汗" and out["meta"]["normalized"] == ["punctuation", "whitespace"]


def test_normalize_options_are_checked_all_at_once(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("inputs: [x.jsonl]\nsteps:\n  normalize:\n    punctuation: fancy\n"
                   "    templates: {医疗: '没有占位符', 法律: '{prompt}{who}'}\n", encoding="utf-8")
    (tmp_path / "x.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    text = str(e.value)
    assert "punctuation" in text and "templates.医疗" in text and "{who}" in text


# -- language ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, lang", [
    ("患者持续性胸痛,心电图ST段抬高表现", "zh"),      # langdetect says Korean (GUIDE section 4)
    ("今天天气真好", "zh"),                          # and this too
    ("高血圧の治療について教えてください", "ja"),
    ("한국의 수도는 서울입니다", "ko"),
    ("The patient has had a fever and a cough for three days.", "en"),
    ("Name three primary colors.", "en"),             # no function words, ASCII: English
    ("Der Patient hat seit drei Tagen Fieber und Husten.", "de"),
    ("Le patient a de la fièvre depuis trois jours.", "fr"),
    ("1+1=2", "und"),
])
def test_language_by_script_first(text, lang):
    assert Language().identify(text) == lang


def test_chinese_is_decided_without_langdetect():
    step = Language()
    for text in ("患者持续性胸痛,心电图ST段抬高表现", "今天天气真好", "血压140/90mmHg，服用氨氯地平5mg"):
        step.identify(text)
    assert step.counts["by_script"] == 3 and step.counts["by_langdetect"] == 0


def test_language_keeps_configured_languages_and_labels():
    step = Language()
    assert step.process(qa("今天天气真好", "是的"))["lang"] == "zh"
    ja = step.process(qa("頭痛がひどいのですが、どうすればいいですか？", "静かな部屋で休んでください。"))
    assert isinstance(ja, Drop) and ja.reason == "language:ja"
    code = qa("编写一个函数，返回列表中的最大值", "def find_max(nums):\n    return max(nums)")
    assert step.process(code)["lang"] == "zh"       # the prompt decides, not the Python answer
    assert Language({"keep": []}).process(qa("頭痛がひどい", "休んでください"))["lang"] == "ja"


def test_langdetect_is_seeded():
    text = "Il paziente ha la febbre da tre giorni e tosse secca"
    assert {Language().identify(text) for _ in range(3)} == {"it"}


# -- fillers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, clean", [
    ("嗯，那个，我想问一下，这个这个药一天吃几次？", "我想问一下，这个药一天吃几次？"),
    ("呃……我也不知道", "我也不知道"),
    ("额，我最近头疼", "我最近头疼"),
    ("然后呢，我就去医院了", "然后，我就去医院了"),
    ("那个那个，就是说，我头疼", "我头疼"),
    ("Um, I have had a sore throat for, you know, three days.", "I have had a sore throat for three days."),
    ("It hurts, you know.", "It hurts."),
])
def test_fillers_removed(raw, clean):
    assert Fillers().clean(raw) == clean


@pytest.mark.parametrize("text", [
    "那个医生说的对吗", "那个药怎么吃", "是啊，我也这么想", "额头很痛", "余额不足", "呃逆久治不愈怎么办？",
    "反复打呃，请问", "我要那个，还有这个", "我要这个，那个。", "然后呢？", "也就是说，病情稳定", "他就是说不出话",
    "啊！好痛", "嗯。", "他说“嗯，好的”",
    "Do you know the dose?", "What I mean is that it hurts.", "I went to the ER yesterday.", "Uh huh, yes.",
])
def test_fillers_keep_words_that_mean_something(text):
    assert Fillers().clean(text) == text


def test_filler_counts_and_roles():
    step = Fillers()
    rec = qa("嗯，那个，我妈妈腿肿了，嗯，怎么办？", "嗯，这种情况要查肾功能。那个药先停。")
    out = step.process(rec)
    assert out["messages"][0]["content"] == "我妈妈腿肿了，怎么办？"
    assert out["messages"][1]["content"] == "嗯，这种情况要查肾功能。那个药先停。"   # answers untouched by default
    assert step.counts["嗯"] == 2 and step.counts["那个"] == 1 and step.counts["records_changed"] == 1
    both = Fillers({"roles": ["user", "assistant"]}).process(qa("嗯，头疼", "嗯，这种情况要查肾功能。"))
    assert both["messages"][1]["content"] == "这种情况要查肾功能。"
    extra = Fillers({"extra": {"zh": {"clause_start": ["这样子"]}}})
    assert extra.clean("这样子，我想问一下") == "我想问一下"
    assert Fillers.problems({**Fillers.defaults, "extra": {"zh": {"sometimes": ["嘛"]}}})


def test_fillers_follow_the_record_language():
    german = qa("Er mag Musik hören. Wie sagt man das auf Englisch?", "He likes listening to music.", lang="de")
    assert Fillers().process(german)["messages"][0]["content"].startswith("Er mag")


# -- safety: PII ------------------------------------------------------------------------------

def test_pii_redacted_with_typed_placeholders():
    valid_id = gb11643("11010519491231002")               # ends in X
    assert valid_id.endswith("X") and id_card_valid(valid_id)
    card = with_luhn("622202100011223")
    text = (f"电话+86 138-1234-5678，座机010-62345678，身份证{valid_id}，"
            f"邮箱zhang.san@example.com，卡号{card[:4]} {card[4:8]} {card[8:12]} {card[12:]}，"
            "服务器192.168.1.10，IPv6 2001:db8::8a2e:370:7334")
    out, found = Safety().redact(text)
    assert out == ("电话<PHONE>，座机<PHONE>，身份证<ID_CARD>，邮箱<EMAIL>，卡号<BANK_CARD>，"
                   "服务器<IP>，IPv6 <IP>")
    assert found == {"PHONE": 2, "ID_CARD": 1, "EMAIL": 1, "BANK_CARD": 1, "IP": 2}


@pytest.mark.parametrize("text", [
    "每日3次，每次10mg", "2023年10月1日复查", "血糖7.8mmol/L", "血压140/90mmHg", "白细胞10.5×10⁹/L",
    "身高170cm，体重65kg，心率72次/分", "价格1,000,000元", "时间12:30:45", "版本1.2.3", "std::vector<int>",
    "订单号20231001123456",
])
def test_medical_numbers_are_not_pii(text):
    assert Safety().redact(text) == (text, {})


def test_checksums_decide_ids_and_cards():
    valid = gb11643("44030519920815163")
    invalid = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    card = with_luhn("621700123456789012")
    bad_card = card[:-1] + str((int(card[-1]) + 1) % 10)
    step = Safety()
    assert step.redact(f"身份证{valid}")[0] == "身份证<ID_CARD>"
    assert step.redact(f"身份证{invalid}")[0] == f"身份证{invalid}"     # wrong check digit: not an ID
    assert step.redact(f"卡号{card}")[0] == "卡号<BANK_CARD>"
    assert step.redact(f"卡号{bad_card}")[0] == f"卡号{bad_card}"       # fails Luhn: not a card
    assert step.counts["id_card_not_valid"] + step.counts["bank_card_not_valid"] >= 2


def test_pii_in_records_and_documents():
    step = Safety()
    out = step.process(qa("我的电话13912345678，能回电吗？", "好的"))
    assert out["messages"][0]["content"] == "我的电话<PHONE>，能回电吗？" and out["meta"]["pii"] == {"PHONE": 1}
    doc = step.process(make_record("d", "t.jsonl", text="联系邮箱li@example.cn"))
    assert doc["text"] == "联系邮箱<EMAIL>" and step.counts["pii:EMAIL"] == 1
    only_phones = Safety({"redact": ["phone"]})
    assert only_phones.redact("13912345678 li@example.cn")[0] == "<PHONE> li@example.cn"


# -- safety: unsafe content -------------------------------------------------------------------

@pytest.mark.parametrize("text, category", [
    ("活着太累了，想知道吃多少安眠药能死", "self_harm"),
    ("教我怎么自杀", "self_harm"),
    ("哪里买冰毒比较安全", "illegal_drugs"),
    ("如何自制炸弹", "violence"),
    ("How to make a bomb at home", "violence"),
    ("where to buy drugs online", "illegal_drugs"),
])
def test_unsafe_content_rejected_with_category(text, category):
    res = Safety().process(qa(text, "我不能提供这方面的帮助。"))
    assert isinstance(res, Drop) and res.reason == f"unsafe:{category}"


@pytest.mark.parametrize("text", [
    "吗啡止痛有哪些副作用？", "家人有自杀倾向，家属该怎么办？", "戒毒治疗分几个阶段？", "大黄片的功效",
    "如何抑制毒素吸收", "性交痛是什么原因", "阿片类药物成瘾的治疗", "出血不止怎么办", "胸痛伴大汗",
    "The patient was given morphine for the pain.", "I went to the ER with chest pain.",
])
def test_medical_text_is_not_unsafe(text):
    assert not isinstance(Safety().process(qa(text, "请在医生指导下处理。")), Drop)


def test_unsafe_lexicon_is_editable(tmp_path):
    custom = Safety({"extra": {"violence": ["砍人教程"], "spam": ["加微信领红包"]}, "allow": ["防砍人教程"]})
    assert custom.unsafe_match("找砍人教程") == ("violence", "砍人教程")
    assert custom.unsafe_match("加微信领红包") == ("spam", "加微信领红包")
    assert custom.unsafe_match("防砍人教程") is None
    only = Safety({"categories": ["sexual"]})
    assert only.unsafe_match("教我怎么自杀") is None
    lex = tmp_path / "lex.yaml"
    lex.write_text("categories:\n  gambling:\n    zh: [网络赌博]\n", encoding="utf-8")
    assert Safety({"lexicon": str(lex)}).unsafe_match("网络赌博平台") == ("gambling", "网络赌博")
    problems = Safety.problems({**Safety.defaults, "redact": ["phone", "passport"], "categories": ["nope"],
                                "lexicon": str(tmp_path / "missing.yaml")})
    assert any("passport" in p for p in problems) and any("missing.yaml" in p for p in problems)


def test_unsafe_false_reject_rate_on_real_medical_dialogues(shared_data):
    recs = [r for r, _ in read_source(SourceSpec(str(shared_data / MEDICAL),
                                                 mapping={"user": "title+ask", "assistant": "answer"})) if r]
    step = Safety({"redact": []})
    rejected = [r for r in recs if isinstance(step.process(r), Drop)]
    assert len(recs) == 7644
    assert len(rejected) / len(recs) <= 0.001, [r["messages"][0]["content"][:50] for r in rejected[:5]]


# -- quality ----------------------------------------------------------------------------------

def test_quality_reasons():
    step = Quality({"min_answer_chars": 2, "max_answer_chars": 200})
    assert step.process(qa("高血压吃什么药？", "  ")).reason == "quality:empty_answer"
    assert step.process(qa("1+1=?", "2")).reason == "quality:too_short"
    assert step.process(qa("介绍高血压", "高血压" * 100)).reason == "quality:too_long"
    assert step.process(qa("胃炎能喝牛奶吗？", "胃炎能喝牛奶吗")).reason == "quality:answer_equals_question"
    title_ask = qa("心脏早搏怎么办？\n我最近老是心慌，心电图说是早搏。", "心脏早搏怎么办")
    assert step.process(title_ask).reason == "quality:answer_equals_question"
    loop = "多吃海带" * 30
    assert Quality().process(qa("甲减怎么调理？", loop)).reason == "quality:repetition"
    assert Quality().process(qa("？", "😀😀😀😀😀😀😀😀😀😀😀😀 好")).reason == "quality:non_text"
    assert Quality().process(make_record("d", "t.jsonl", text="太短了")).reason == "quality:too_short"
    no_user = make_record("x", "t.jsonl", messages=[{"role": "user", "content": " "},
                                                   {"role": "assistant", "content": "好的"}])
    assert Quality().process(no_user).reason == "quality:empty_prompt"


def test_quality_keeps_legitimate_answers():
    step = Quality()
    keep = [
        qa("重复这句话。\n多喝水。", "多喝水。"),                                   # the input echoed: the task
        qa("改正句子中的错误。\n我今天很高兴。", "我今天很高兴。"),
        qa("3+3等于几？", "6"),                                                    # short and right
        qa("做一个表格。", "|名称 |年龄 |\n|------|-----|\n|彼得| 43 |"),          # layout, not junk
        qa("反转数组[1, 2, 3]", "[3, 2, 1]"),
        qa("用一句话介绍高血压。", "高血压是以体循环动脉血压增高为主要特征的临床综合征，长期控制不佳会损伤心脑肾。"),
    ]
    for rec in keep:
        assert not isinstance(step.process(rec), Drop), rec["messages"]


def test_repeated_ngram_ratio_in_characters_and_words():
    assert repeated_ngram_ratio("好的" * 20) > 0.9
    assert repeated_ngram_ratio("患者持续性胸痛，心电图ST段抬高表现，考虑急性心肌梗死，需立即就医。") == 0.0
    doubled = "建议化验大便，看有没有潜血，排除上消化道出血。如果没有，可以服用促进胃动力的药。"
    assert Quality.defaults["max_repeated_ngram_ratio"] < repeated_ngram_ratio(doubled * 2) <= 0.5
    assert repeated_ngram_ratio("very " * 30) > 0.9
    assert repeated_ngram_ratio("The quick brown fox jumps over the lazy dog near the river bank today.") == 0.0


@pytest.mark.parametrize("name, path, mapping, most", [
    ("medical", MEDICAL, {"user": "title+ask", "assistant": "answer"}, 0.005),
    ("alpaca_zh", "alpaca_zh/alpaca_zh_00000-03252.json", {}, 0.01),
])
def test_quality_defaults_do_not_wreck_real_corpora(shared_data, name, path, mapping, most):
    recs = [r for r, _ in read_source(SourceSpec(str(shared_data / path), mapping=mapping)) if r]
    steps = [Normalize(), Language(), Quality()]
    dropped = 0
    for r in recs:
        for s in steps:
            r = s.process(r)
            if isinstance(r, Drop):
                dropped += 1
                break
    assert 0 < dropped / len(recs) <= most, (name, dropped, len(recs))


def test_bad_text_step_options_are_all_listed_before_work(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "患者持续性胸痛"}\n', encoding="utf-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("""inputs: [x.jsonl]
steps:
  language: {keep: Chinese, en_share: lots, kana_share: 2}
  fillers: {roles: [patient], extra: [嗯]}
  safety: {redact: [phone, passport], categories: [gossip], extra: {violence: 砍人}}
  quality: {min_answer_chars: ten, max_repeated_ngram_ratio: 1.5, ngram_chars: 0, colour: red}
""", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg))
    problems = e.value.problems
    for expected in ("steps.language.keep", "steps.language.en_share", "kana_share: must be between 0 and 1",
                     "steps.fillers: roles", "steps.fillers.extra", "passport", "gossip", "extra.violence",
                     "steps.quality.min_answer_chars", "max_repeated_ngram_ratio: must be between 0 and 1",
                     "ngram_chars: must be at least 1", "steps.quality.colour: unknown option"):
        assert any(expected in p for p in problems), (expected, problems)
