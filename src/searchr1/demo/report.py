"""The demo's comparison (EVAL's methods on the test split) and its artifacts.

``summary.json`` has this shape (more keys may follow)::

    {"wall_seconds": float, "train_steps": int,
     "methods": {"search-r1": {"em", "f1", "searches_per_question"}, "r1": {...}, "rag": {...}, "direct": {...}},
     "by_type": {"single-hop": {"search-r1": em, ...}, "two-hop": {...}}}
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from searchr1.data.qa import QAExample
from searchr1.eval.methods import get_method
from searchr1.eval.types import EvalContext
from searchr1.models.generate import Decoding, HFGenerator

CURVES = (("reward/mean", "reward (EM)"), ("heldout/em", "held-out EM (dev, greedy)"),
          ("rollout/searches", "searches / trajectory"), ("rollout/response_len", "response length (tokens)"),
          ("rollout/masked_frac", "masked (retrieved) token share"))


BASE_SEARCH = "base+search"
"""The base model run with the search-r1 method and no RL: what RL adds is search-r1 minus this row."""


def compare_methods(methods: dict[str, tuple[object, object]], retriever, test: list[QAExample], cfg) -> dict:
    """Run each method on ``test``. methods: name -> (model, tokenizer). Returns name -> predictions.
    ``base+search`` runs the ``search-r1`` method (its caller passes the base model)."""
    out = {}
    for name, (model, tok) in methods.items():
        r = cfg.train.rollout
        ctx = EvalContext(generator=HFGenerator(model, tok, batch_size=32), retriever=retriever, topk=r.topk,
                          decoding=Decoding(max_new_tokens=r.max_turn_tokens, seed=cfg.seed),
                          max_turns=r.max_turns, model=model, tokenizer=tok)
        out[name] = get_method("search-r1" if name == BASE_SEARCH else name).run(test, ctx, dataset="searchworld")
        for p in out[name]:
            p.method = name  # base+search predictions are labelled as such in predictions.jsonl
    return out


def summarize(preds: dict, test: list[QAExample], wall: float, steps: int) -> dict:
    types = {q.id: q.metadata["type"] for q in test}
    summary = {"wall_seconds": round(wall, 1), "train_steps": steps, "test_questions": len(test),
               "methods": {}, "by_type": {}, "searches_by_type": {}}
    for name, ps in preds.items():
        n = max(1, len(ps))
        summary["methods"][name] = {"em": sum(p.em for p in ps) / n, "f1": sum(p.f1 for p in ps) / n,
                                    "searches_per_question": sum(p.searches for p in ps) / n}
        for kind in sorted(set(types.values())):
            sel = [p for p in ps if types[p.id] == kind]
            row = summary["by_type"].setdefault(kind, {})
            row[name] = sum(p.em for p in sel) / max(1, len(sel))
            summary["searches_by_type"].setdefault(kind, {})[name] = sum(p.searches for p in sel) / max(1, len(sel))
    return summary


def plot_curves(histories: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, (key, title) in zip(axes, CURVES):
        for name, hist in histories.items():
            pts = [(r["step"], r[key]) for r in hist if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(summary: dict) -> list[str]:
    names = list(summary["methods"])
    kinds = list(summary["by_type"])
    lines = ["| method | EM | F1 | searches/q | " + " | ".join(f"EM {k}" for k in kinds) + " | "
             + " | ".join(f"searches {k}" for k in kinds) + " |", "|---|---|---|---|" + "---|" * 2 * len(kinds)]
    for n in names:
        m = summary["methods"][n]
        lines.append(f"| {n} | {m['em']:.3f} | {m['f1']:.3f} | {m['searches_per_question']:.2f} | "
                     + " | ".join(f"{summary['by_type'][k][n]:.3f}" for k in kinds) + " | "
                     + " | ".join(f"{summary['searches_by_type'][k][n]:.2f}" for k in kinds) + " |")
    return lines


def console_table(summary: dict) -> str:
    return "\n".join(_table(summary))


def aggregate(summaries: list[dict]) -> dict:
    """Mean and std over seeds of every numeric leaf of the per-seed summaries."""
    def walk(items):
        first = items[0]
        if isinstance(first, dict):
            return {k: walk([it[k] for it in items]) for k in first}
        if isinstance(first, (int, float)):
            return {"mean": statistics.fmean(items), "std": statistics.pstdev(items) if len(items) > 1 else 0.0}
        return first
    return walk(summaries)


def write_report(out: Path, summary: dict, settings: dict, probes: dict, timings: dict,
                 seeds_summary: dict | None = None) -> None:
    lines = ["# Search-R1 demo on SearchWorld", "",
             "A tiny copy-capable model, pretrained only on the protocol format with a random policy, "
             "is trained with RL to search; then it is compared on the held-out test split with the same "
             "base model trained without search (`r1`), given the top-k passages (`rag`), or answering "
             "directly (`direct`); `base+search` is the base model with the search template and no RL, "
             "so what RL adds is `search-r1` minus `base+search`. See docs/demo.md.", "",
             f"Test questions: {summary['test_questions']}; RL steps: {summary['train_steps']}; "
             f"wall time: {summary['wall_seconds']:.0f} s.", "", *_table(summary), ""]
    if seeds_summary:
        kinds = list(seeds_summary["by_type"])
        lines += ["## Over seeds (mean ± std)", "", "| method | EM | " + " | ".join(f"EM {k}" for k in kinds) + " |",
                  "|---|---|" + "---|" * len(kinds)]
        for n, m in seeds_summary["methods"].items():
            cells = [f"{seeds_summary['by_type'][k][n]['mean']:.3f} ± {seeds_summary['by_type'][k][n]['std']:.3f}"
                     for k in kinds]
            lines.append(f"| {n} | {m['em']['mean']:.3f} ± {m['em']['std']:.3f} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Base model probe (sampled, dev split)", "",
              "What predicts whether RL can start: valid format, queries that name the question's entity, "
              "answers copied from retrieved text.", "", "```", json.dumps(probes, indent=1), "```", "",
              "## Wall times (s)", "", "```", json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1),
              "```", "", "## Settings", "", "```", json.dumps(settings, indent=1, default=str), "```", "",
              "Curves: `curves.png`; per-step metrics: `history.json`; final policy: `checkpoint/`."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
