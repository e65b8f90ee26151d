"""Protocol manifests: what must match for two evaluation results to be comparable.

A manifest records the corpus (path, checksum), the retriever (kind, index checksum,
server URL), top-k, the model (name, revision, weight hash), each method's prompt
template hashes and settings, the metric, the decoding settings, the seed and the data
sets (checksums, sizes, limit). ``compare_manifests`` lists the fields that differ,
ignoring those that never change a score (:data:`IGNORED`: paths of outputs, times,
host, package version).
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

from searchr1 import __version__

IGNORED = ("created", "host", "searchr1_version", "output_dir", "wall_seconds")
IGNORED_ANYWHERE = ("location",)  # paths: the same corpus / index may live anywhere
METRIC = "exact match after SQuAD normalization (lowercase, no punctuation/articles); max over gold answers"
INDEX_META_FILES = ("meta.json", "index.json", "metadata.json", "index_meta.json")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def index_protocol(index_dir: str | Path) -> dict:
    """Index description from its ``index.json`` (written by ``searchr1 index``: kind, passage
    count, corpus checksum, retriever settings) and a checksum over the index files' names and
    sizes and its small JSON settings files (large binaries enter by size, so hashing a
    Wikipedia-scale index stays instant). Paths go under ``location`` (never compared)."""
    d = Path(index_dir)
    meta: dict = {}
    for name in INDEX_META_FILES:
        if (d / name).is_file():
            meta = json.loads((d / name).read_text())
            break
    h = hashlib.sha256()
    for p in sorted(x for x in d.rglob("*") if x.is_file()):
        rel = p.relative_to(d).as_posix()
        if rel in INDEX_META_FILES:
            continue  # holds build times; its stable fields are recorded below
        h.update(f"{rel}\0{p.stat().st_size}\0".encode())
        if p.suffix == ".json" and p.stat().st_size < (1 << 20):
            h.update(p.read_bytes())
    corpus = meta.get("corpus") if isinstance(meta.get("corpus"), dict) else {}
    return {"kind": meta.get("kind"), "num_passages": meta.get("num_passages"),
            "corpus_sha256": corpus.get("sha256"), "settings": meta.get("retriever"),
            "index_sha256": h.hexdigest()[:16],
            "location": {"index_dir": str(d), "corpus_path": corpus.get("path")}}


def dataset_protocol(name: str, examples: list, source: str | None, limit: int | None) -> dict:
    ids = "\n".join(f"{e.id}\t{e.question}\t{'|'.join(e.golden_answers)}" for e in examples)
    return {"name": name, "n": len(examples), "limit": limit, "sha256": text_sha256(ids),
            "location": {"source": source}}


def build_manifest(*, model: dict, retriever: dict | None, topk: int, methods: dict, decoding: dict,
                   datasets: list[dict], seed: int, settings: dict | None = None) -> dict:
    return {
        "protocol_version": 1,
        "model": model,
        "retriever": retriever,
        "topk": topk,
        "methods": methods,
        "metric": METRIC,
        "decoding": decoding,
        "seed": seed,
        "settings": settings or {},
        "datasets": {d["name"]: d for d in datasets},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "searchr1_version": __version__,
    }


def flatten(d, prefix: str = "") -> dict:
    """{"a.b.c": value} for nested dicts (lists are compared whole)."""
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = d
    return out


def load_manifest(path: str | Path) -> dict:
    """The manifest of a ``results.json`` or ``manifest.json`` file (or of an output dir)."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist; pass the results.json written by `searchr1 eval`.")
    data = json.loads(p.read_text())
    manifest = data.get("manifest", data) if isinstance(data, dict) else None
    if not isinstance(manifest, dict) or "protocol_version" not in manifest:
        raise ValueError(f"{p} holds no protocol manifest; pass a results.json or manifest.json "
                         "written by `searchr1 eval`.")
    return manifest


def compare_manifests(a: dict, b: dict, ignore: tuple[str, ...] = IGNORED) -> list[tuple[str, object, object]]:
    """Fields whose values differ: [(dotted.field, value in a, value in b)], sorted.

    Methods and data sets present in only one of the two are not differences (a result
    may cover more of them); see :func:`coverage` for those.
    """
    fa, fb = flatten(a), flatten(b)
    only = {f"{section}.{name}" for section in ("methods", "datasets")
            for name in set(a.get(section) or {}) ^ set(b.get(section) or {})}

    def skip(k: str) -> bool:
        parts = k.split(".")
        return (parts[0] in ignore or ".".join(parts[:2]) in only
                or any(p in IGNORED_ANYWHERE for p in parts))

    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if not skip(k) and fa.get(k) != fb.get(k)]


def coverage(a: dict, b: dict) -> dict[str, dict[str, list[str]]]:
    """Methods / data sets only in A, only in B, and in both."""
    out = {}
    for section in ("methods", "datasets"):
        ka, kb = set(a.get(section) or {}), set(b.get(section) or {})
        out[section] = {"only_a": sorted(ka - kb), "only_b": sorted(kb - ka), "both": sorted(ka & kb)}
    return out
