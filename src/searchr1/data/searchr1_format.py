"""Search-R1's parquet format, read and written.

Search-R1 (``scripts/data_process/nq_search.py``) writes one row per question::

    data_source  "nq"                       (Search-R1 picks its reward function by this name)
    prompt       [{"role": "user", "content": <template with the question>}]
    ability      "fact-reasoning"
    reward_model {"style": "rule", "ground_truth": {"target": [gold answers]}}
    extra_info   {"split": "train", "index": 0}

and, because it builds rows with ``datasets.map``, keeps the FlashRAG columns
``id``, ``question``, ``golden_answers`` next to them. We write all of these plus a
``metadata`` column (the example's metadata as a JSON string), so files written
here train in Search-R1 unchanged and read back exactly.

Reading. Gold answers come from ``reward_model.ground_truth.target`` (what
Search-R1 rewards against). The question is, in order of preference:

1. the ``question`` column, when present (Search-R1's own files have it);
2. ``extra_info["question"]``;
3. recovered from the prompt: the last user message's content is matched against
   our known templates (exact, giving back the question as the template received
   it, i.e. stripped and with "?" appended); failing that, the text after the last
   ``"Question: "`` up to the end, stripped. A prompt without ``"Question: "`` is a
   ``DataError``.

The id is the ``id`` column, else ``extra_info["id"]``, else
``"{split}_{index}"``. Metadata is the ``metadata`` column (our files), else
``{"data_source", "ability", "split", "index"}`` from the row.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from searchr1.data.prompts import TEMPLATES, make_prompt
from searchr1.data.qa import DataError, QAExample, check_answers, check_id, check_question, metadata_json

#: Data sources Search-R1's reward dispatcher knows (all scored with exact match).
SEARCH_R1_SOURCES = ("nq", "triviaqa", "popqa", "hotpotqa", "2wikimultihopqa", "musique", "bamboogle")
QUESTION_MARKER = "Question: "


def _schema():
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()),
        ("question", pa.string()),
        ("golden_answers", pa.list_(pa.string())),
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([
            ("style", pa.string()),
            ("ground_truth", pa.struct([("target", pa.list_(pa.string()))])),
        ])),
        ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64())])),
        ("metadata", pa.string()),
    ])


def question_from_prompt(content: str, source: str = "<prompt>", row: int | None = None) -> str:
    """Recover the question from a Search-R1 style prompt text (see module docstring, step 3)."""
    for template in TEMPLATES.values():
        if "{passages}" in template:
            continue
        head, _, tail = template.partition("{question}")
        if content.startswith(head) and content.endswith(tail) and len(content) > len(head) + len(tail):
            return content[len(head):len(content) - len(tail)]
    at = content.rfind(QUESTION_MARKER)
    if at < 0 or not content[at + len(QUESTION_MARKER):].strip():
        where = f"{source}: row {row}" if row is not None else source
        raise DataError(f"{where}: field 'prompt': cannot find the question (no text after "
                        f"{QUESTION_MARKER!r}); add a 'question' column or use Search-R1's template.")
    return content[at + len(QUESTION_MARKER):].strip()


def _user_content(prompt: Any, source: str, row: int) -> str:
    if isinstance(prompt, str):
        return prompt
    messages = list(prompt) if isinstance(prompt, Iterable) and not isinstance(prompt, Mapping) else None
    users = [m.get("content") for m in messages or [] if isinstance(m, Mapping) and m.get("role") == "user"]
    if not users or not isinstance(users[-1], str):
        raise DataError(f"{source}: row {row}: field 'prompt' must be a list of chat messages with a user "
                        "message; got " f"{prompt!r:.80}.")
    return users[-1]


def example_from_searchr1(row: Mapping, source: str, index: int) -> QAExample:
    """One Search-R1 row (a dict) -> QAExample; ``index`` is the 1-based row for messages."""
    rm = row.get("reward_model")
    gt = rm.get("ground_truth") if isinstance(rm, Mapping) else None
    if not isinstance(gt, Mapping) or "target" not in gt:
        raise DataError(f"{source}: row {index}: field 'reward_model.ground_truth.target' is missing; "
                        "Search-R1 rows need reward_model = {\"style\": \"rule\", \"ground_truth\": "
                        "{\"target\": [...]}}.")
    answers = check_answers(gt["target"], source, index, "reward_model.ground_truth.target")
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), Mapping) else {}
    if isinstance(row.get("question"), str):
        question = row["question"]
    elif isinstance(extra.get("question"), str):
        question = extra["question"]
    else:
        if "prompt" not in row:
            raise DataError(f"{source}: row {index}: field 'prompt' is missing (and no 'question' column).")
        question = question_from_prompt(_user_content(row["prompt"], source, index), source, index)
    question = check_question(question, source, index)
    split, idx = extra.get("split"), extra.get("index")
    default_id = f"{split}_{idx}" if split is not None and idx is not None else f"{Path(source).stem}_{index - 1}"
    id_ = check_id(row.get("id", extra.get("id")), default_id, source, index)
    raw_meta = row.get("metadata")
    if isinstance(raw_meta, str) and raw_meta:
        try:
            metadata = json.loads(raw_meta)
        except json.JSONDecodeError as e:
            raise DataError(f"{source}: row {index}: field 'metadata' is not valid JSON ({e.msg}).") from None
    elif isinstance(raw_meta, Mapping):
        metadata = dict(raw_meta)
    else:
        metadata = {k: v for k, v in (("data_source", row.get("data_source")), ("ability", row.get("ability")),
                                      ("split", split), ("index", idx)) if v is not None}
    if not isinstance(metadata, dict):
        raise DataError(f"{source}: row {index}: field 'metadata' must hold a JSON object.")
    return QAExample(id=id_, question=question, golden_answers=answers, metadata=metadata)


def read_searchr1_parquet(path: str | Path, limit: int | None = None) -> list[QAExample]:
    """Examples of a Search-R1 parquet file (first ``limit`` rows when given)."""
    import pyarrow.parquet as pq

    path = Path(path)
    out: list[QAExample] = []
    if limit == 0:
        return out
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):  # streamed: big files stay cheap
        for row in batch.to_pylist():
            out.append(example_from_searchr1(row, str(path), len(out) + 1))
            if limit is not None and len(out) >= limit:
                return out
    return out


def to_searchr1_row(example: QAExample, index: int, *, split: str = "train", data_source: str | None = None,
                    template: str = "search-r1") -> dict:
    """One Search-R1 row. data_source: explicit, else ``metadata["data_source"]``, else "nq"."""
    source = data_source or example.metadata.get("data_source") or "nq"
    return {
        "id": example.id,
        "question": example.question,
        "golden_answers": list(example.golden_answers),
        "data_source": str(source),
        "prompt": [{"role": "user", "content": make_prompt(example.question, template)}],
        "ability": "fact-reasoning",
        "reward_model": {"style": "rule", "ground_truth": {"target": list(example.golden_answers)}},
        "extra_info": {"split": split, "index": index},
        "metadata": metadata_json(example),
    }


def write_searchr1_parquet(examples: Iterable[QAExample], path: str | Path, *, split: str = "train",
                           data_source: str | None = None, template: str = "search-r1") -> int:
    """Write examples as a Search-R1 parquet file; returns the number of rows.

    data_source: Search-R1 selects its reward function by it and knows only
    ``SEARCH_R1_SOURCES`` (all exact match); examples without one get "nq".
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [to_searchr1_row(ex, i, split=split, data_source=data_source, template=template)
            for i, ex in enumerate(examples)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), path)
    return len(rows)
