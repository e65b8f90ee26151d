"""``load_qa``: one call for every QA source.

``source`` is either a path or one of the paper's seven data set names.

Paths:
* ``*.jsonl`` / ``*.json`` — FlashRAG JSONL (a ``.json`` file may also be one JSON array of rows);
* ``*.parquet`` — Search-R1 parquet;
* a directory written by ``datasets.save_to_disk`` (a ``Dataset`` or a
  ``DatasetDict``; pick the split with ``split``) — rows in either format;
* a directory holding ``{split}.jsonl`` or ``{split}.parquet``.

Names (``nq``, ``triviaqa``, ``popqa``, ``hotpotqa``, ``2wikimultihopqa``,
``musique``, ``bamboogle``) resolve to ``<data dir>/<name>/<split>.jsonl`` (or
``.parquet``), where the data dir is ``data_dir``, else ``$SEARCHR1_DATA_DIR``,
else ``~/.cache/searchr1/data``. The default split is the one the paper
evaluates on (test for nq/triviaqa/popqa/bamboogle, dev for the others). The
files are FlashRAG's (Hugging Face hub: ``RUC-NLPIR/FlashRAG_datasets``). With
``download=True`` a missing file is fetched from the hub with
``datasets.load_dataset`` and saved at that path; without it (the default, so
nothing touches the network unasked) a missing file raises
``DataNotFoundError`` saying where to put it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from searchr1.data.qa import (
    DataError,
    DataNotFoundError,
    QAExample,
    example_from_flashrag,
    read_flashrag_jsonl,
    write_flashrag_jsonl,
)
from searchr1.data.searchr1_format import example_from_searchr1, read_searchr1_parquet

HUB_REPO = "RUC-NLPIR/FlashRAG_datasets"
#: name -> (splits FlashRAG provides, split the paper evaluates on)
DATASETS: dict[str, tuple[tuple[str, ...], str]] = {
    "nq": (("train", "dev", "test"), "test"),
    "triviaqa": (("train", "dev", "test"), "test"),
    "popqa": (("test",), "test"),
    "hotpotqa": (("train", "dev"), "dev"),
    "2wikimultihopqa": (("train", "dev"), "dev"),
    "musique": (("train", "dev"), "dev"),
    "bamboogle": (("test",), "test"),
}
SUFFIXES = (".jsonl", ".parquet")


def resolve_data_dir(override: str | Path | None = None) -> Path:
    """Where named data sets live: ``override``, else $SEARCHR1_DATA_DIR, else ~/.cache/searchr1/data."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("SEARCHR1_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "searchr1" / "data"


def read_file(path: Path, limit: int | None = None) -> list[QAExample]:
    """A FlashRAG JSONL or Search-R1 parquet file, chosen by suffix."""
    if path.suffix in (".jsonl", ".json"):
        return read_flashrag_jsonl(path, limit)
    if path.suffix == ".parquet":
        return read_searchr1_parquet(path, limit)
    raise DataError(f"{path}: unknown file type {path.suffix!r}; use .jsonl (FlashRAG) or .parquet (Search-R1).")


def example_from_row(row: Mapping, source: str, index: int) -> QAExample:
    """A row in either format (Search-R1 when it has ``reward_model``)."""
    if isinstance(row, Mapping) and "reward_model" in row:
        return example_from_searchr1(row, source, index)
    return example_from_flashrag(row, source, index, f"{Path(source).name}_{index - 1}")


def _is_hf_dir(path: Path) -> bool:
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()


def read_hf_dir(path: Path, split: str | None = None, limit: int | None = None) -> list[QAExample]:
    """A directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError as e:
        raise DataError(f"{path} is a Hugging Face datasets directory; install the 'data' extra "
                        "(pip install 'searchr1[data]').") from e
    ds: Any = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise DataError(f"{path}: pick a split with split=... (available: {', '.join(ds)}).")
        ds = ds[split]
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return [example_from_row(row, str(path), i) for i, row in enumerate(ds, start=1)]


def _resolve_in_dir(directory: Path, split: str | None) -> Path | None:
    if split is None:
        return None
    for suffix in SUFFIXES:
        if (directory / f"{split}{suffix}").exists():
            return directory / f"{split}{suffix}"
    return None


def _hub_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the hub could not give us this data set" (network, offline, missing)."""
    errors: list[type[BaseException]] = [ConnectionError, OSError, TimeoutError]
    try:
        from datasets.exceptions import DatasetNotFoundError

        errors.append(DatasetNotFoundError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def download_named(name: str, split: str, target: Path) -> None:
    """Fetch ``name``/``split`` from FlashRAG's hub data set and save it as FlashRAG JSONL at ``target``."""
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise DataError("downloading needs the 'data' extra: pip install 'searchr1[data]'.") from e
    try:
        ds = load_dataset(HUB_REPO, name, split=split)
    except _hub_errors() as e:
        raise DataNotFoundError(
            f"could not download {name}/{split} from the Hugging Face hub ({HUB_REPO}): "
            f"{type(e).__name__}: {e}. Download it elsewhere and copy it to {target}."
        ) from e
    examples = [example_from_row(row, f"{HUB_REPO}/{name}/{split}", i) for i, row in enumerate(ds, start=1)]
    write_flashrag_jsonl(examples, target)


def _load_named(name: str, split: str | None, limit: int | None, root: Path, download: bool) -> list[QAExample]:
    splits, default = DATASETS[name]
    split = split or default
    if split not in splits:
        raise DataError(f"{name} has no split {split!r}; FlashRAG provides {', '.join(splits)}.")
    found = _resolve_in_dir(root / name, split)
    if found is not None:
        return read_file(found, limit)
    target = root / name / f"{split}.jsonl"
    if download:
        download_named(name, split, target)
        return read_file(target, limit)
    raise DataNotFoundError(
        f"{name}/{split} not found: put FlashRAG's file at {target} (or a Search-R1 parquet at "
        f"{target.with_suffix('.parquet')}). Get it from the Hugging Face hub data set {HUB_REPO} "
        f"(file {name}/{split}.jsonl), e.g. `huggingface-cli download --repo-type dataset {HUB_REPO} "
        f"{name}/{split}.jsonl --local-dir {root}`, or pass download=True (CLI: --download). "
        "Set SEARCHR1_DATA_DIR to use another data directory."
    )


def load_qa(source: str | Path, split: str | None = None, limit: int | None = None, *,
            data_dir: str | Path | None = None, download: bool = False) -> list[QAExample]:
    """QA examples from a path or a data set name (see module docstring).

    split: for names and directories (default: the paper's evaluation split for
    names; the only split of a one-split HF dataset dict). limit: first N examples.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}.")
    path = Path(source).expanduser()
    if path.is_file():
        return read_file(path, limit)
    if path.is_dir():
        if _is_hf_dir(path):
            return read_hf_dir(path, split, limit)
        found = _resolve_in_dir(path, split)
        if found is None:
            have = sorted({p.stem for p in path.iterdir() if p.suffix in SUFFIXES})
            raise DataError(f"{path}: no {split or '<split>'}.jsonl or .parquet here and not a saved HF dataset; "
                            f"pick a split (split=..., CLI --split) among: {', '.join(have) or 'none'}.")
        return read_file(found, limit)
    name = str(source).lower()
    if name in DATASETS:
        return _load_named(name, split, limit, resolve_data_dir(data_dir), download)
    raise DataNotFoundError(f"{source}: no such file or directory, and not a known data set name "
                            f"({', '.join(DATASETS)}).")
