"""Prompts: the verbatim Search-R1 template, baselines, passages, chat formatting."""
import pytest

from searchr1.data.prompts import (
    SEARCH_R1_TEMPLATE,
    TEMPLATES,
    apply_chat_template,
    make_prompt,
    render_passages,
    template_hash,
)
from searchr1.search.base import Document, Hit

EXPECTED_SEARCH_R1 = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first every time "
    "you get new information. After reasoning, if you find you lack some knowledge, you can call a search "
    "engine by <search> query </search> and it will return the top searched results between <information> "
    "and </information>. You can search as many times as your want. If you find no further external "
    "knowledge needed, you can directly provide the answer inside <answer> and </answer>, without detailed "
    "illustrations. For example, <answer> Beijing </answer>. Question: {question}\n"
)


def test_search_r1_template_is_verbatim():
    assert SEARCH_R1_TEMPLATE == EXPECTED_SEARCH_R1
    assert make_prompt("  who wrote Hamlet ") == EXPECTED_SEARCH_R1.replace("{question}", "who wrote Hamlet?")
    assert make_prompt("is it?").endswith("Question: is it?\n")


def test_baseline_templates():
    q = "Where is Zürich"
    direct, cot, r1 = (make_prompt(q, t) for t in ("direct", "cot", "r1"))
    for p in (direct, cot, r1):
        assert p.endswith("Question: Where is Zürich?\n") and "<answer>" in p
        assert "<search>" not in p  # no search engine offered
    assert "step by step" in cot and "<think>" in r1
    with pytest.raises(ValueError, match="needs passages"):
        make_prompt(q, "rag")
    with pytest.raises(ValueError, match="no place for passages"):
        make_prompt(q, "direct", passages=[])
    with pytest.raises(ValueError, match="unknown template"):
        make_prompt(q, "rgа")
    with pytest.raises(ValueError, match="question is empty"):
        make_prompt("   ")
    assert make_prompt("x", "Q={question}") == "Q=x?"


def test_render_passages_as_search_r1():
    docs = [Document("d1", "Paris", "Paris is the capital.\nSecond line."),
            Hit(Document("d2", "Lyon {question}", "A city."), 3.5),
            {"contents": '"Nice"\nOn the coast.'},
            {"document": {"id": "x", "contents": '"Nantes"\nWest.'}, "score": 1.0},
            {"title": "Tours", "text": "Loire."}]
    assert render_passages(docs) == (
        'Doc 1(Title: "Paris") Paris is the capital.\nSecond line.\n'
        'Doc 2(Title: "Lyon {question}") A city.\n'
        'Doc 3(Title: "Nice") On the coast.\n'
        'Doc 4(Title: "Nantes") West.\n'
        'Doc 5(Title: "Tours") Loire.\n'
    )
    rag = make_prompt("capital of France", "rag", passages=docs[:2])
    assert 'Doc 2(Title: "Lyon {question}") A city.\nQuestion: capital of France?\n' in rag
    with pytest.raises(TypeError, match="cannot render"):
        render_passages([42])


def test_template_hash_is_stable_and_distinct():
    hashes = {name: template_hash(name) for name in TEMPLATES}
    assert len(set(hashes.values())) == len(TEMPLATES)
    assert all(len(h) == 16 for h in hashes.values())
    assert template_hash("search-r1") == template_hash(SEARCH_R1_TEMPLATE)


def test_chat_template_with_real_qwen_tokenizer(qwen_tokenizer):
    prompt = make_prompt("Who founded Ørsted")
    text = apply_chat_template(qwen_tokenizer, prompt)
    assert text == f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    ids = qwen_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert qwen_tokenizer.decode(ids) == text  # the Search-R1 tags survive tokenization


def test_raw_prompt_without_chat_template():
    class Bare:
        chat_template = None

    assert apply_chat_template(Bare(), "hello") == "hello"
