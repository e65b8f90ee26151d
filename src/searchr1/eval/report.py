"""Aggregating predictions and writing the report: results.md, results.json, results.png.

``results.md``: one table per metric, rows = methods, columns = data sets + average
(the unweighted mean over data sets, as in the paper's tables); EM first.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from searchr1.eval.types import Prediction

# (key, column title, how many decimals); EM is the headline metric
METRICS = [("em", "EM", 3), ("subem", "sub-EM", 3), ("f1", "F1", 3), ("searches", "searches/q", 2),
           ("turns", "turns", 2), ("response_tokens", "response tokens", 1),
           ("invalid_rate", "invalid-action rate", 3), ("evidence_recall", "evidence recall", 3),
           ("search_failures", "failed searches/q", 2)]


def aggregate(preds: list[Prediction]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{method: {dataset: {metric: mean, "n": count}}}; invalid_rate = invalid / (valid + invalid)."""
    groups: dict[tuple[str, str], list[Prediction]] = defaultdict(list)
    for p in preds:
        groups[(p.method, p.dataset)].append(p)
    out: dict = defaultdict(dict)
    for (method, dataset), ps in groups.items():
        n = len(ps)
        row = {k: sum(getattr(p, k) for p in ps) / n
               for k in ("em", "subem", "f1", "searches", "turns", "response_tokens", "search_failures")}
        row["failed_searches"] = sum(p.search_failures for p in ps)
        row["predictions_with_failed_searches"] = sum(1 for p in ps if p.search_failures)
        actions = sum(p.valid_actions + p.invalid_actions for p in ps)
        row["invalid_rate"] = sum(p.invalid_actions for p in ps) / actions if actions else 0.0
        rec = [p.evidence_recall for p in ps if p.evidence_recall is not None]
        row["evidence_recall"] = sum(rec) / len(rec) if rec else None
        row["n"] = n
        out[method][dataset] = row
    return dict(out)


def _fmt(v, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def markdown(summary: dict, methods: list[str], datasets: list[str], title: str = "") -> str:
    lines = [f"# {title}" if title else "# Evaluation results", ""]
    failed = sum(summary.get(m, {}).get(d, {}).get("failed_searches", 0) for m in methods for d in datasets)
    if failed:
        hit = sum(summary.get(m, {}).get(d, {}).get("predictions_with_failed_searches", 0)
                  for m in methods for d in datasets)
        lines += [f"**{failed} searches failed, in {hit} predictions**: their scores count the outage, not the "
                  "method. Re-run the same command (same `--out`) once retrieval works: those predictions are "
                  "run again.", ""]
    for key, name, digits in METRICS:
        if key == "evidence_recall" and all(summary.get(m, {}).get(d, {}).get(key) is None
                                            for m in methods for d in datasets):
            continue
        if key == "search_failures" and not failed:
            continue
        lines += [f"## {name}", "", "| method | " + " | ".join(datasets) + " | average |",
                  "|---|" + "---:|" * (len(datasets) + 1)]
        for m in methods:
            vals = [summary.get(m, {}).get(d, {}).get(key) for d in datasets]
            known = [v for v in vals if v is not None]
            avg = sum(known) / len(known) if known and len(known) == len(vals) else None
            lines.append(f"| {m} | " + " | ".join(_fmt(v, digits) for v in vals) + f" | {_fmt(avg, digits)} |")
        lines.append("")
    counts = {d: max((summary.get(m, {}).get(d, {}).get("n", 0) for m in methods), default=0) for d in datasets}
    lines.append("Questions per data set: " + ", ".join(f"{d}: {n}" for d, n in counts.items()))
    return "\n".join(lines) + "\n"


def bar_chart(summary: dict, methods: list[str], datasets: list[str], path: str | Path, metric: str = "em") -> None:
    """Grouped bars: one group per data set (and the average), one bar per method."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state is touched

    groups = datasets + (["average"] if len(datasets) > 1 else [])
    fig = Figure(figsize=(max(5.0, 1.4 * len(groups) * max(1, len(methods)) / 3 + 2), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        vals = [summary.get(m, {}).get(d, {}).get(metric) or 0.0 for d in datasets]
        if len(groups) > len(datasets):
            vals.append(sum(vals) / len(vals))
        bars = ax.bar([i + (j - (len(methods) - 1) / 2) * width for i in range(len(groups))], vals, width, label=m)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(metric.upper())
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncols=min(4, len(methods)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(out_dir: str | Path, preds: list[Prediction], manifest: dict, methods: list[str],
                  datasets: list[str]) -> dict:
    """Write results.md, results.json (manifest, summary, every prediction), results.png, manifest.json."""
    out = Path(out_dir)
    summary = aggregate(preds)
    (out / "results.md").write_text(markdown(summary, methods, datasets,
                                             title=f"Evaluation: {manifest['model'].get('name', '')}"))
    order = {(m, d): k for k, (m, d) in enumerate((m, d) for m in methods for d in datasets)}
    rows = sorted(preds, key=lambda p: (order.get((p.method, p.dataset), 1 << 30), p.id))
    (out / "results.json").write_text(json.dumps(
        {"manifest": manifest, "summary": summary, "predictions": [p.to_dict() for p in rows]},
        indent=1, ensure_ascii=False))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    bar_chart(summary, methods, datasets, out / "results.png")
    return summary
