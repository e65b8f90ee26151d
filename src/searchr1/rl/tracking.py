"""Metric sinks: JSONL (always), TensorBoard and wandb (opt-in, imported only when asked),
a tqdm progress bar and a PNG of the main curves.

Names are namespaced: ``rollout/…``, ``reward/…``, ``actor/…``, ``critic/…``,
``time/…``, ``throughput/…``, ``val/…``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

CURVES = ("reward/mean", "reward/em", "val/em", "actor/kl", "actor/entropy", "critic/value_loss")


class Tracker:
    def __init__(self, out_dir: str | Path, cfg, total_steps: int, start_step: int = 0,
                 run_config: dict | None = None, enabled: bool = True):
        self.out_dir = Path(out_dir)
        self.cfg, self.enabled = cfg, enabled
        self.tb = self.wandb = self.bar = None
        self.dev_em = float("nan")   # the last held-out EM, shown in the progress bar
        self.jsonl = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.jsonl:
            path = self.out_dir / "metrics.jsonl"
            set_aside_stale_rows(path, start_step)
            self.jsonl = open(path, "a", encoding="utf-8")
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("logging.tensorboard=true needs tensorboard: pip install tensorboard") from e
            self.tb = SummaryWriter(str(self.out_dir / "tensorboard"))
        if cfg.wandb:
            try:
                import wandb
            except ImportError as e:
                raise ImportError("logging.wandb=true needs wandb: pip install wandb (and wandb login)") from e
            self.wandb = wandb.init(project=cfg.wandb_project, dir=str(self.out_dir), config=run_config or {},
                                    resume="allow")
        if cfg.progress_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items()}
        if self.jsonl:
            self.jsonl.write(json.dumps({"step": step, **{k: (v if math.isfinite(v) else None)
                                                          for k, v in clean.items()}}) + "\n")
            self.jsonl.flush()
        if self.tb:
            for k, v in clean.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb:
            self.wandb.log(clean, step=step)
        if "val/em" in clean:
            self.dev_em = clean["val/em"]
        if self.bar and "reward/mean" in clean:
            self.bar.update(max(0, step - self.bar.n))
            self.bar.set_postfix(reward=f"{clean.get('reward/mean', 0):.3f}", dev_em=f"{self.dev_em:.3f}",
                                 searches=f"{clean.get('rollout/searches', 0):.2f}",
                                 tok_s=f"{clean.get('throughput/tokens_per_s', 0):.0f}")

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar:
            self.bar.close()
        if self.jsonl:
            self.jsonl.close()
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()
        if self.cfg.plot and (self.out_dir / "metrics.jsonl").is_file():
            plot_curves(self.out_dir / "metrics.jsonl", self.out_dir / "curves.png")


def set_aside_stale_rows(path: Path, start_step: int) -> None:
    """Keep ``metrics.jsonl`` to the run that continues from ``start_step``; nothing is deleted.

    A fresh run (``start_step == 0``) into a directory that already has metrics renames the old
    file to ``metrics.prev-N.jsonl``; a resumed run moves the rows logged after its checkpoint
    (steps it will redo) to ``metrics.superseded.jsonl`` so curves show each step once, and lines
    that are not a JSON row (a write torn by a crash) to ``metrics.torn.jsonl``.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    if start_step == 0:
        n = 1
        while path.with_name(f"metrics.prev-{n}.jsonl").exists():
            n += 1
        path.rename(path.with_name(f"metrics.prev-{n}.jsonl"))
        print(f"metrics: {path} held an earlier run's rows; moved them to metrics.prev-{n}.jsonl")
        return
    keep, stale, torn = [], [], []
    text = path.read_text(encoding="utf-8", errors="replace")
    for ln in text.splitlines():
        if not ln.strip():
            continue
        row = _parse_row(ln)
        (torn if row is None else stale if row.get("step", 0) > start_step else keep).append(ln + "\n")
    if not stale and not torn and text.endswith("\n"):
        return                  # (a missing last newline is restored so the next row starts a line)
    for name, rows in (("metrics.superseded.jsonl", stale), ("metrics.torn.jsonl", torn)):
        if rows:
            with open(path.with_name(name), "a", encoding="utf-8") as f:
                f.writelines(rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(keep), encoding="utf-8")
    tmp.replace(path)
    if stale:
        print(f"metrics: resuming at step {start_step}; moved {len(stale)} later rows to metrics.superseded.jsonl")
    if torn:
        print(f"metrics: moved {len(torn)} unreadable (torn) lines to metrics.torn.jsonl")


def _parse_row(line: str) -> dict | None:
    """A metrics row, or None for a line that is not a JSON object (torn by a crash mid-write)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl; lines torn by a crash are skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return [row for line in f if line.strip() and (row := _parse_row(line)) is not None]


def plot_curves(metrics_file: str | Path, png: str | Path, keys=CURVES) -> Path | None:
    """Plot the main curves from a metrics.jsonl into ``png`` (matplotlib Agg, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_file)
    present = [k for k in keys if any(r.get(k) is not None for r in rows)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(3.2 * len(present), 2.8), squeeze=False)
    for ax, k in zip(axes[0], present):
        pts = [(r["step"], r[k]) for r in rows if r.get(k) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 30 else None)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)
