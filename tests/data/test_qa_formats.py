"""QA formats: FlashRAG JSONL, Search-R1 parquet, HF datasets dirs, named sets, bad rows."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from searchr1.data.load import HUB_REPO, load_qa
from searchr1.data.prompts import SEARCH_R1_TEMPLATE, make_prompt
from searchr1.data.qa import (
    DataError,
    DataNotFoundError,
    QAExample,
    read_flashrag_jsonl,
    write_flashrag_jsonl,
)
from searchr1.data.searchr1_format import question_from_prompt, read_searchr1_parquet, write_searchr1_parquet

EXAMPLES = [
    QAExample("test_0", "who wrote the Zürich “Manifest”", ["Jörg Müller", "J. Müller"],
              {"data_source": "nq", "evidence_ids": ["d1", "d2"]}),
    QAExample("test_1", "  где находится Москва?  ", ["Россия"], {}),
    QAExample("test_2", "東京の人口は?", ["1400万"], {"type": "single-hop", "nested": {"a": [1, 2]}}),
]


def _write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in rows), encoding="utf-8")
    return path


def test_flashrag_roundtrip_preserves_unicode(tmp_path):
    path = tmp_path / "qa.jsonl"
    assert write_flashrag_jsonl(EXAMPLES, path) == 3
    assert "Zürich" in path.read_text(encoding="utf-8")  # written unescaped
    assert read_flashrag_jsonl(path) == EXAMPLES
    assert load_qa(path, limit=2) == EXAMPLES[:2]


def test_flashrag_extra_keys_and_missing_ids(tmp_path):
    path = _write_lines(tmp_path / "dev.jsonl", [
        {"question": "q1", "golden_answers": ["a"], "type": "bridge", "metadata": {"level": "hard"}},
        "",
        {"id": 7, "question": "q2", "golden_answers": ["b"]},
    ])
    ex = read_flashrag_jsonl(path)
    assert ex[0] == QAExample("dev_0", "q1", ["a"], {"level": "hard", "type": "bridge"})
    assert ex[1].id == "7"


def test_searchr1_parquet_roundtrip_and_schema(tmp_path):
    path = tmp_path / "train.parquet"
    assert write_searchr1_parquet(EXAMPLES, path, split="test", data_source="hotpotqa") == 3
    assert read_searchr1_parquet(path) == EXAMPLES
    row = pq.read_table(path).to_pylist()[1]
    assert row["data_source"] == "hotpotqa" and row["ability"] == "fact-reasoning"
    assert row["prompt"] == [{"role": "user", "content": make_prompt("где находится Москва?")}]
    assert row["reward_model"] == {"style": "rule", "ground_truth": {"target": ["Россия"]}}
    assert row["extra_info"] == {"split": "test", "index": 1}
    # data source defaults to the example's own, else "nq"
    write_searchr1_parquet(EXAMPLES, path)
    assert [r["data_source"] for r in pq.read_table(path).to_pylist()] == ["nq", "nq", "nq"]


def test_flashrag_to_parquet_to_flashrag(tmp_path):
    src = tmp_path / "a.jsonl"
    write_flashrag_jsonl(EXAMPLES, src)
    write_searchr1_parquet(load_qa(src), tmp_path / "b.parquet")
    write_flashrag_jsonl(load_qa(tmp_path / "b.parquet"), tmp_path / "c.jsonl")
    assert (tmp_path / "c.jsonl").read_text(encoding="utf-8") == src.read_text(encoding="utf-8")


def _native_searchr1_table(prompts, targets):
    """Rows as Search-R1's preprocessing writes them, without the FlashRAG columns."""
    rows = [{"data_source": "nq", "prompt": [{"role": "user", "content": p}], "ability": "fact-reasoning",
             "reward_model": {"style": "rule", "ground_truth": {"target": t}},
             "extra_info": {"split": "train", "index": i}} for i, (p, t) in enumerate(zip(prompts, targets))]
    return pa.Table.from_pylist(rows)


def test_question_recovered_from_native_prompt(tmp_path):
    custom = "You are a helpful assistant.\nQuestion: Who painted the Mona Lisa?  \n"
    prompts = [make_prompt("who was the first Question: master"), custom]
    path = tmp_path / "native.parquet"
    pq.write_table(_native_searchr1_table(prompts, [["x"], ["Leonardo", "da Vinci"]]), path)
    ex = read_searchr1_parquet(path)
    # known template: exact, even with "Question: " inside the question
    assert ex[0] == QAExample("train_0", "who was the first Question: master?", ["x"],
                              {"data_source": "nq", "ability": "fact-reasoning", "split": "train", "index": 0})
    assert ex[1].question == "Who painted the Mona Lisa?"  # after the last marker, stripped
    assert ex[1].golden_answers == ["Leonardo", "da Vinci"]
    with pytest.raises(DataError, match="field 'prompt': cannot find the question"):
        question_from_prompt("no marker here", "f.parquet", 3)
    assert question_from_prompt(SEARCH_R1_TEMPLATE.format(question="Why?")) == "Why?"


@pytest.mark.parametrize("row, field", [
    ({"golden_answers": ["a"]}, "field 'question' is missing"),
    ({"question": "q", "golden_answers": []}, "field 'golden_answers' is empty"),
    ({"question": "q", "golden_answers": "a"}, "field 'golden_answers' must be a list"),
    ({"question": "q", "golden_answers": ["a", 3]}, r"field 'golden_answers'\[1\] must be a string"),
    ({"question": 5, "golden_answers": ["a"]}, "field 'question' must be a string"),
    ({"question": "  ", "golden_answers": ["a"]}, "field 'question' is empty"),
    ({"question": "q"}, "field 'golden_answers' is missing"),
    ({"question": "q", "golden_answers": ["a"], "metadata": [1]}, "field 'metadata' must be an object"),
    ({"question": "q", "golden_answers": ["a"], "id": 1.5}, "field 'id'"),
    ("[1, 2]", "expected a JSON object"),
    ("{not json", "not valid JSON"),
])
def test_malformed_jsonl_rows_name_file_row_field(tmp_path, row, field):
    path = _write_lines(tmp_path / "bad.jsonl", [{"question": "ok", "golden_answers": ["fine"]}, row])
    with pytest.raises(DataError, match=field) as info:
        load_qa(path)
    assert str(path) in str(info.value) and "row 2" in str(info.value)


def test_malformed_parquet_rows(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(_native_searchr1_table([make_prompt("q")], [[]]), path)
    with pytest.raises(DataError, match=r"bad.parquet: row 1: field 'reward_model.ground_truth.target' is empty"):
        load_qa(path)
    pq.write_table(pa.Table.from_pylist([{"data_source": "nq", "reward_model": {"style": "rule"}}]), path)
    with pytest.raises(DataError, match="row 1: field 'reward_model.ground_truth.target' is missing"):
        load_qa(path)


def test_hf_datasets_directories(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"id": e.id, "question": e.question, "golden_answers": e.golden_answers} for e in EXAMPLES]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "single"))
    assert [e.question for e in load_qa(tmp_path / "single")] == [e.question for e in EXAMPLES]
    write_searchr1_parquet(EXAMPLES, tmp_path / "x.parquet")
    sr1 = datasets.Dataset.from_parquet(str(tmp_path / "x.parquet"))
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": sr1})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert load_qa(tmp_path / "dict", split="test") == EXAMPLES  # Search-R1 rows inside a HF dir
    assert len(load_qa(tmp_path / "dict", split="train", limit=1)) == 1
    with pytest.raises(DataError, match="pick a split"):
        load_qa(tmp_path / "dict")


def test_named_sets_resolve_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCHR1_DATA_DIR", str(tmp_path))
    write_flashrag_jsonl(EXAMPLES, tmp_path / "nq" / "test.jsonl")
    write_searchr1_parquet(EXAMPLES[:1], tmp_path / "hotpotqa" / "dev.parquet")
    assert load_qa("nq") == EXAMPLES  # default split: the paper's (test)
    assert load_qa("NQ", split="test", limit=1) == EXAMPLES[:1]
    assert load_qa("hotpotqa") == EXAMPLES[:1]  # default split dev, parquet accepted
    assert load_qa(tmp_path / "nq", split="test") == EXAMPLES  # a directory of split files
    with pytest.raises(DataError, match="has no split 'train'; FlashRAG provides test"):
        load_qa("bamboogle", split="train")
    with pytest.raises(DataNotFoundError) as info:
        load_qa("musique", data_dir=tmp_path / "elsewhere")
    msg = str(info.value)
    assert str(tmp_path / "elsewhere" / "musique" / "dev.jsonl") in msg and HUB_REPO in msg
    with pytest.raises(DataNotFoundError, match="not a known data set name"):
        load_qa(tmp_path / "missing.jsonl")


def test_download_reports_unreachable_hub(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match=f"could not download popqa/test from the Hugging Face hub"):
        load_qa("popqa", data_dir=tmp_path, download=True)
    assert not (tmp_path / "popqa" / "test.jsonl").exists()


def test_unserializable_metadata_is_a_clear_error(tmp_path):
    bad = [QAExample("x1", "q", ["a"], {"when": object()})]
    with pytest.raises(DataError, match="example 'x1': metadata cannot be written as JSON"):
        write_flashrag_jsonl(bad, tmp_path / "o.jsonl")
    with pytest.raises(DataError, match="example 'x1'"):
        write_searchr1_parquet(bad, tmp_path / "o.parquet")


def test_json_array_files(tmp_path):
    path = tmp_path / "bamboogle.json"
    path.write_text(json.dumps([{"id": "b0", "question": "Qui?", "golden_answers": ["Moi"]},
                                {"question": "Où?", "golden_answers": ["Ici"]}], ensure_ascii=False), encoding="utf-8")
    assert load_qa(path) == [QAExample("b0", "Qui?", ["Moi"]), QAExample("bamboogle_1", "Où?", ["Ici"])]
    path.write_text(json.dumps([{"question": "Qui?", "golden_answers": [None]}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"bamboogle.json: row 1: field 'golden_answers'\[0\]"):
        load_qa(path)
