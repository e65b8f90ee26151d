"""``evaluate``: run methods × data sets, append predictions as they complete, write the report.

Resumable: every batch of predictions is appended to ``<out>/predictions.jsonl`` as soon as it
is done; a re-run with the same output directory skips the (method, dataset, id) keys already
there and only runs the missing questions and those whose searches failed (a retrieval outage is
retried, never kept as a wrong answer; the newer prediction replaces the failed one). A re-run whose protocol differs from the one
recorded in ``<out>/manifest.partial.json`` is refused (mixing protocols in one table would
make it meaningless); use another ``--out`` or delete the directory.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from searchr1.data.qa import QAExample
from searchr1.eval.manifest import build_manifest, compare_manifests, text_sha256
from searchr1.eval.methods import METHODS, get_method
from searchr1.eval.report import write_results
from searchr1.eval.types import EvalContext, Prediction

PREDICTIONS = "predictions.jsonl"
log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where one (method, data set) stands: questions done of total, this run's time on it and an ETA."""

    method: str
    dataset: str
    done: int
    total: int
    elapsed: float         # seconds this run spent on this (method, data set)
    eta: float | None      # seconds left at this run's pace (None before the first batch)

    def line(self) -> str:
        eta = "" if self.eta is None else f", ETA {_clock(self.eta)}"
        return f"{self.method:>10} {self.dataset}: {self.done}/{self.total} ({_clock(self.elapsed)} elapsed{eta})"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


MAX_NEW_TOKENS = {"direct": 32, "rag": 32, "cot": 128, "r1": 128, "ircot": 64, "search-o1": 128, "search-r1": 256}
"""Default token budget of one generation call (one turn) per method: an answer-only method needs a few
tokens, a reasoning turn more. ``--max-new-tokens`` sets one budget for every method instead."""


@dataclass
class EvalConfig:
    methods: list[str] = field(default_factory=lambda: ["direct", "cot", "rag"])
    """Method names (see ``searchr1.eval.methods.METHODS``), in table order."""
    batch_size: int = 8
    """Questions per method call; predictions are saved after every batch."""
    method_options: dict[str, dict] = field(default_factory=dict)
    """Constructor options per method, e.g. ``{"ircot": {"max_docs": 10}}``."""
    max_new_tokens: int | None = None
    """One token budget per generation call for every method; None = the per-method MAX_NEW_TOKENS."""

    def budget(self, method: str) -> int:
        return self.max_new_tokens if self.max_new_tokens is not None else MAX_NEW_TOKENS.get(method, 256)

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown or no methods {unknown}; choose from {', '.join(METHODS)}.")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods listed twice: {self.methods}; list each once.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")


def read_predictions(path: Path) -> list[Prediction]:
    """Predictions of a (possibly crashed) run; a torn last line is dropped."""
    if not path.is_file():
        return []
    preds = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            preds.append(Prediction.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            continue  # a line cut by a crash mid-write; its question is run again
    return preds


def evaluate(datasets: dict[str, list[QAExample]], ctx: EvalContext, config: EvalConfig, out_dir: str | Path,
             model_info: dict, retriever_info: dict | None, dataset_info: list[dict],
             progress: Callable[[Progress], None] | None = None) -> dict:
    """Run, write results.{md,json,png} and manifest.json under ``out_dir``; return results.json's content."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = {name: get_method(name, **config.method_options.get(name, {})) for name in config.methods}
    for name, m in methods.items():
        if m.needs_retriever and ctx.retriever is None:
            raise ValueError(f"method {name!r} searches; pass a retriever (--index DIR or --server URL) "
                             "or drop it from --methods.")
    decoding = {k: v for k, v in ctx.decoding.to_dict().items() if k != "max_new_tokens"}   # per method below
    manifest = build_manifest(
        model=model_info, retriever=retriever_info, topk=ctx.topk, decoding=decoding,
        seed=ctx.decoding.seed, datasets=dataset_info,
        methods={name: {"templates": {k: text_sha256(v) for k, v in m.templates.items()},
                        "max_new_tokens": config.budget(name), **m.describe()}
                 for name, m in methods.items()},
        settings={"max_turns": ctx.max_turns, "ircot_steps": ctx.ircot_steps})
    _check_resume(out, manifest)
    path = out / PREDICTIONS
    preds = read_predictions(path)
    done = {p.key() for p in preds if not p.search_failures}
    retry = sum(1 for p in preds if p.search_failures)
    if retry:
        log.info("re-running %d earlier predictions whose searches failed", retry)
    started = time.perf_counter()
    if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a", encoding="utf-8") as sink:  # end a line torn by a crash before appending
            sink.write("\n")
    with path.open("a", encoding="utf-8") as sink:
        for name, method in methods.items():
            mctx = dataclasses.replace(ctx, decoding=dataclasses.replace(ctx.decoding,
                                                                         max_new_tokens=config.budget(name)))
            for dname, examples in datasets.items():
                todo = [ex for ex in examples if (name, dname, str(ex.id)) not in done]
                t_start, before = time.perf_counter(), len(examples) - len(todo)
                for i in range(0, len(todo), config.batch_size):
                    batch = todo[i:i + config.batch_size]
                    new = method.run(batch, mctx, dataset=dname)
                    for p in new:
                        sink.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
                    sink.flush()
                    preds.extend(new)
                    if progress:
                        elapsed, ran = time.perf_counter() - t_start, i + len(batch)
                        progress(Progress(name, dname, before + ran, len(examples), elapsed,
                                          elapsed / ran * (len(todo) - ran)))
    wanted = {(m, d, str(ex.id)) for m in methods for d, exs in datasets.items() for ex in exs}
    preds = list({p.key(): p for p in preds if p.key() in wanted}.values())   # a re-run replaces a failed one
    manifest["wall_seconds"] = round(time.perf_counter() - started, 1)
    manifest["output_dir"] = str(out)
    write_results(out, preds, manifest, list(methods), list(datasets))
    return json.loads((out / "results.json").read_text())


def _check_resume(out: Path, manifest: dict) -> None:
    partial = out / "manifest.partial.json"
    def sources_only(m: dict) -> dict:  # --limit may grow between runs: data sets are matched by name
        return {**m, "datasets": {k: {} for k in m.get("datasets", {})}}

    if partial.is_file() and (out / PREDICTIONS).is_file():
        diffs = compare_manifests(sources_only(json.loads(partial.read_text())), sources_only(manifest))
        if diffs:
            fields = ", ".join(k for k, _, _ in diffs[:8])
            raise ValueError(f"{out} holds predictions made under another protocol (differs in: {fields}); "
                             "use a new --out directory or delete this one.")
    merged = manifest
    if partial.is_file():  # keep methods / data sets of earlier runs so a widened re-run still checks them
        old = json.loads(partial.read_text())
        merged = {**manifest, "methods": {**old.get("methods", {}), **manifest["methods"]},
                  "datasets": {**old.get("datasets", {}), **manifest["datasets"]}}
    partial.write_text(json.dumps(merged, indent=2, ensure_ascii=False))
