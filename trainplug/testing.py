"""Small real inputs for trainplug's tests and demos: short Chinese and English dialogues (some
multi-turn), plain documents for continued pre-training, and a tiny randomly initialised Llama
(real transformers code, a few thousand times smaller than SmolLM2) that shares its tokenizer.

    >>> recs = sample_records()
    >>> len(recs) >= 30 and all(r["id"] for r in recs)
    True
"""
from __future__ import annotations

from pathlib import Path

DIALOGUES = [
    ("头痛怎么办？", "先休息，多喝水；持续头痛或伴有呕吐请及时就医。"),
    ("高血压患者能喝咖啡吗？", "可以少量饮用，但要监测血压，避免浓咖啡。"),
    ("感冒发烧38度要吃药吗？", "38度可以先物理降温，超过38.5度可服用退烧药。"),
    ("糖尿病人能吃水果吗？", "血糖控制稳定时可以吃低糖水果，如苹果、柚子，注意分量。"),
    ("胃痛吃什么好？", "清淡饮食，少食多餐，避免辛辣和生冷食物。"),
    ("失眠有什么办法？", "规律作息，睡前不看手机，必要时咨询医生。"),
    ("孩子咳嗽一周了怎么办？", "建议带孩子去儿科检查，排除肺炎等感染。"),
    ("What should I do for a mild sunburn?", "Cool the skin, use aloe vera gel, drink water and avoid more sun."),
    ("How much water should an adult drink a day?", "About 1.5 to 2 litres, more in hot weather or with exercise."),
    ("Is it safe to take ibuprofen on an empty stomach?", "It can irritate the stomach; take it with food when you can."),
    ("How long does a common cold last?", "Usually seven to ten days; see a doctor if it gets worse."),
    ("什么是胰岛素抵抗？", "胰岛素抵抗是指身体细胞对胰岛素反应降低，血糖不易被利用。"),
    ("心肌梗死有哪些症状？", "常见胸痛、胸闷、出汗、气短，应立即拨打急救电话。"),
    ("贫血吃什么补血？", "多吃瘦肉、动物肝脏、菠菜等富含铁的食物。"),
    ("Can I exercise with a cold?", "Light exercise is fine if symptoms are above the neck; rest if you have a fever."),
    ("What is a normal resting heart rate?", "For adults it is usually between 60 and 100 beats per minute."),
    ("拉肚子应该注意什么？", "补充水分和电解质，饮食清淡，严重时就医。"),
    ("长期熬夜有什么危害？", "会影响免疫力、记忆力，增加心血管疾病风险。"),
    ("How can I lower my cholesterol?", "Eat more fibre, less saturated fat, exercise, and ask about medication."),
    ("過敏性鼻炎怎麼辦？", "避免接觸過敏原，可使用抗組胺藥或鼻噴劑。"),
    ("维生素D有什么作用？", "帮助钙吸收，维持骨骼健康，也与免疫功能有关。"),
    ("What does a fever mean?", "It usually means the body is fighting an infection."),
    ("血糖多少算正常？", "空腹血糖一般在3.9到6.1毫摩尔每升之间。"),
    ("喉咙痛怎么缓解？", "多喝温水，用淡盐水漱口，少说话。"),
]

MULTI_TURN = [
    [("我最近总是头晕。", "头晕多久了？有没有高血压病史？"), ("大概一周，没有高血压。", "建议测量血压和血糖，必要时做头颅检查。")],
    [("I twisted my ankle.", "Can you put weight on it?"), ("A little, but it hurts.", "Rest, ice, compress and elevate it; see a doctor if it does not improve.")],
    [("孩子发烧了。", "体温多少度？精神状态好吗？"), ("38.8度，精神还可以。", "可以服用儿童退烧药，多喝水，观察变化。")],
]

DOCUMENTS = [
    "高血压是一种常见的慢性病，长期血压升高会损害心脏、大脑和肾脏。控制体重、限制盐摄入和规律运动有助于降低血压。",
    "Type 2 diabetes develops when the body becomes resistant to insulin. Diet, exercise and medication help keep blood sugar in range.",
    "心肌梗死是冠状动脉急性闭塞导致的心肌坏死，典型症状为持续胸痛，需尽快开通血管。",
    "Vitamin D helps the body absorb calcium. Sunlight, fatty fish and fortified foods are common sources.",
]


def sample_records(n_copies: int = 1, documents: bool = False) -> list[dict]:
    """Schema records (``curate.schema``); ``n_copies`` repeats the set under new ids."""
    from curate.schema import make_record
    out = []
    for c in range(n_copies):
        for i, (q, a) in enumerate(DIALOGUES):
            out.append(make_record(f"d{c}-{i}", "trainplug.testing", messages=[
                {"role": "user", "content": q}, {"role": "assistant", "content": a}], task="medical"))
        for i, turns in enumerate(MULTI_TURN):
            msgs = [{"role": "system", "content": "你是一名耐心的医生。"}] if i == 0 else []
            for q, a in turns:
                msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            out.append(make_record(f"m{c}-{i}", "trainplug.testing", messages=msgs, task="medical"))
        if documents:
            out += [make_record(f"t{c}-{i}", "trainplug.testing", text=t) for i, t in enumerate(DOCUMENTS)]
    return out


def tiny_model(dest: str | Path, tokenizer_dir: str | Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A randomly initialised Llama with ``tokenizer_dir``'s tokenizer, saved as a transformers folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    dest = Path(dest)
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=len(tok), tie_word_embeddings=True, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    return dest
