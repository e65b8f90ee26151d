"""From finished runs to numbers: per-condition test EM with CIs, and each finding's difference and verdict."""
from __future__ import annotations

from pathlib import Path

from searchr1.study import stats
from searchr1.study.config import EM_METRICS, Finding, StudyConfig
from searchr1.study.run import load_history

CONDITION_METRICS = EM_METRICS + ("searches",)


def per_question(results: dict[int, dict], metric: str) -> dict[int, dict[str, float]]:
    """seed -> {question id: value} of one condition; ``em_<type>`` keeps that question type only."""
    key, kind = ("searches", None) if metric == "searches" else ("em", metric[3:] or None)
    return {s: {q: float(v[key]) for q, v in r["per_question"].items() if kind is None or v["type"] == kind}
            for s, r in results.items()}


def condition_estimates(cfg: StudyConfig, results: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """condition -> metric -> Estimate (hierarchical bootstrap over seeds and questions)."""
    out = {}
    for name, by_seed in results.items():
        if not by_seed:
            continue
        out[name] = {}
        for metric in CONDITION_METRICS:
            vals = [list(d.values()) for d in per_question(by_seed, metric).values() if d]
            if vals:
                out[name][metric] = stats.hierarchical_bootstrap(vals, cfg.bootstrap, cfg.ci)
    return out


def run_value(out: Path, cond: str, seed: int, metric: str) -> float:
    """A per-run statistic of a training curve (``dev_drop``, ``length_dip``)."""
    hist = load_history(out, cond, seed)
    if metric == "dev_drop":
        return stats.dev_drop([r["heldout/em"] for r in hist if "heldout/em" in r])
    return stats.length_dip([r["rollout/response_len"] for r in hist if r["step"] >= 1])


def finding_estimate(cfg: StudyConfig, f: Finding, results: dict[str, dict[int, dict]], out: Path
                     ) -> stats.Estimate | None:
    """The finding's difference a - b (or a's value) with its CI; None when a run it needs is missing."""
    if f.metric in EM_METRICS:
        a, b = per_question(results[f.a], f.metric), per_question(results[f.b], f.metric)
        if not a or not b:
            return None
        return stats.hierarchical_bootstrap(stats.paired_differences(a, b), cfg.bootstrap, cfg.ci)
    seeds = sorted(set(results[f.a]) & (set(results[f.b]) if f.b else set(results[f.a])))
    if not seeds:
        return None
    vals = [[run_value(out, f.a, s, f.metric) - (run_value(out, f.b, s, f.metric) if f.b else 0.0)]
            for s in seeds]
    return stats.hierarchical_bootstrap(vals, cfg.bootstrap, cfg.ci)


def findings_table(cfg: StudyConfig, results: dict[str, dict[int, dict]], out: Path) -> list[dict]:
    """One row per finding: the estimate, the verdict, and a's and b's own values for the report."""
    rows = []
    for f in cfg.findings:
        est = finding_estimate(cfg, f, results, out)
        need = stats.min_seeds_for_runs(cfg.ci) if f.metric not in EM_METRICS else 1
        note = f"a per-run statistic needs >= {need} seeds" if est is not None and est.seeds < need else ""
        rows.append({"finding": f, "estimate": est, "note": note,
                     "verdict": stats.classify(est, need) if est is not None else "not run"})
    return rows
