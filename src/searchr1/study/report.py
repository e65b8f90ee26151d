"""A study's artifacts: ``report.md``, ``stats.json`` and training-dynamics plots (matplotlib, as the demo)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from searchr1.study.analysis import condition_estimates, findings_table
from searchr1.study.config import StudyConfig
from searchr1.study.run import load_history
from searchr1.study.stats import min_seeds_for_runs

CURVES = (("reward/mean", "reward (EM)"), ("heldout/em", "dev EM (greedy)"), ("heldout/em_two-hop", "dev EM two-hop"),
          ("rollout/response_len", "response length (tokens)"), ("rollout/searches", "searches / trajectory"),
          ("actor/entropy", "entropy"), ("actor/kl", "KL to reference"), ("rollout/masked_frac", "masked share"),
          ("collapse/same_reward_groups", "groups with one reward"),
          ("collapse/rewarded_logp", "log-prob of rewarded responses"), ("collapse/invalid_rate", "invalid actions"),
          ("critic/explained_var", "critic explained variance (PPO)"))
SCHEME = ("Intervals: 95% percentile bootstrap, hierarchical (resample seeds, then each drawn seed's test "
          "questions; {n} replicates). Differences are paired: condition a minus b on the same seed and "
          "question. Curve findings (dev_drop, length_dip) resample seeds only (one value per run): with n "
          "seeds their interval is about [min, max] over seeds, so they get a verdict only from {m} seeds on "
          "(where every seed agreeing is a 95% sign test). Verdict: the CI excludes 0 in the paper's "
          "direction -> reproduced; the other way -> not reproduced; else inconclusive.")


def write_study_report(cfg: StudyConfig, results: dict[str, dict[int, dict]], out: Path, command: str = "",
                       wall_seconds: float | None = None) -> Path:
    """Write ``report.md``, ``stats.json`` and ``plots/`` under ``out``; returns the report's path."""
    out = Path(out)
    est = condition_estimates(cfg, results)
    rows = findings_table(cfg, results, out)
    plots = plot_dynamics(cfg, results, out / "plots")
    (out / "stats.json").write_text(json.dumps({
        "conditions": {c: {m: e.__dict__ for m, e in ms.items()} for c, ms in est.items()},
        "findings": [{"name": r["finding"].name, "a": r["finding"].a, "b": r["finding"].b,
                      "metric": r["finding"].metric, "verdict": r["verdict"], "note": r["note"],
                      "estimate": r["estimate"].__dict__ if r["estimate"] else None} for r in rows]}, indent=1))
    lines = [f"# Study `{cfg.name}` on SearchWorld", "", cfg.description.strip(), ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    n_runs = sum(len(v) for v in results.values())
    n_test = sorted({len(r["per_question"]) for v in results.values() for r in v.values()})
    lines += [f"Seeds: {cfg.seeds} (a seed sets the world, the question samples and RL sampling); runs finished: "
              f"{n_runs} of {len(cfg.conditions) * cfg.seeds}; model selection: `{cfg.select}` on "
              f"{cfg.dev_questions} dev questions every {cfg.eval_every} steps; {cfg.total_steps} steps per "
              f"trained run; test: {'/'.join(map(str, n_test))} questions per seed, scored once after selection."
              + (f" Wall time: {wall_seconds:.0f} s." if wall_seconds is not None else ""), "",
              "## Findings", "", "| finding | claim | paper | ours: a − b [95% CI] | verdict |",
              "|---|---|---|---|---|"]
    for r in rows:
        f, e = r["finding"], r["estimate"]
        what = f"{f.a} − {f.b}" if f.b else f.a
        ours = f"{what} ({f.metric}): {e.fmt()}, {e.seeds} seeds" if e else "—"
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(f"| {f.name} | {f.claim} | {f.paper} | {ours} | **{r['verdict']}**{note} |")
    lines += ["", SCHEME.format(n=cfg.bootstrap, m=min_seeds_for_runs(cfg.ci)), "",
              "## Conditions (test EM, mean [95% CI])", "",
              "| condition | method | EM | EM single-hop | EM two-hop | searches/q | selected step (dev EM) per seed "
              "| rollout budget | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, cond in cfg.conditions.items():
        by_seed = results.get(name, {})
        if not by_seed:
            lines.append(f"| {name} | {cond.method} | not run | | | | | | |")
            continue
        e = est[name]
        cells = [e[m].fmt() if m in e else "—" for m in ("em", "em_single-hop", "em_two-hop")]
        sel = ", ".join(_selected(r) for _, r in sorted(by_seed.items()))
        budget = next(iter(by_seed.values()))["rollout_budget"]
        wall = sum(r["wall_seconds"] for r in by_seed.values())
        method = cond.method + ("" if cond.search else " (no search)")
        lines.append(f"| {name} | {method} | {' | '.join(cells)} | {e['searches'].mean:.2f} | {sel} | {budget} "
                     f"| {wall:.0f} |")
    lines += ["", "## Training dynamics", "", "Mean over seeds per step, trained conditions side by side "
              "(`plots/dynamics.png`); one figure per condition with one line per seed (`plots/<condition>.png`).",
              ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [
              "", "Per-run files: `runs/<condition>/seed-<s>/` (`result.json` with per-question test EM, "
              "`history.json` with every step's metrics, `settings.json`)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _selected(r: dict) -> str:
    dev = r["selected_dev_em"]
    return f"{r['selected_step']}" + (f" ({dev:.2f})" if dev is not None else "")


def plot_dynamics(cfg: StudyConfig, results: dict[str, dict[int, dict]], plot_dir: Path) -> list[Path]:
    """``dynamics.png`` (conditions side by side, seed means) and one ``<condition>.png`` per trained one."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    out_dir = plot_dir.parent
    trained = [n for n, c in cfg.conditions.items() if c.trained and results.get(n)]
    if not trained:
        return []
    hists = {n: {s: load_history(out_dir, n, s) for s in sorted(results[n])} for n in trained}
    paths = []

    def figure(series: dict[str, dict[str, list[tuple[int, float]]]], title: str, path: Path) -> None:
        cols = 5
        rows = math.ceil(len(CURVES) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows))
        for ax, (key, label) in zip(axes.flat, CURVES):
            for i, (name, pts) in enumerate(series[key].items()):   # a series keeps its colour in every panel
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=2, label=name, color=f"C{i % 10}")
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("RL step", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(CURVES):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)

    means = {key: {n: _seed_mean(hists[n].values(), key) for n in trained} for key, _ in CURVES}
    figure(means, f"study {cfg.name}: mean over seeds", plot_dir / "dynamics.png")
    for n in trained:
        per_seed = {key: {f"seed {s}": _points(h, key) for s, h in hists[n].items()} for key, _ in CURVES}
        figure(per_seed, f"{n}", plot_dir / f"{n}.png")
    return paths


def _points(hist: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in hist if key in r and not math.isnan(r[key])]


def _seed_mean(hists, key: str) -> list[tuple[int, float]]:
    by_step: dict[int, list[float]] = {}
    for h in hists:
        for step, v in _points(h, key):
            by_step.setdefault(step, []).append(v)
    return [(s, float(np.mean(v))) for s, v in sorted(by_step.items())]
