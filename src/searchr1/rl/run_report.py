"""What a finished run leaves for its user: ``report.md`` and the configuration with its secrets removed."""
from __future__ import annotations

import json
from pathlib import Path

from searchr1.rl.config import TrainConfig, config_to_dict


def write_run_report(out: Path, cfg: TrainConfig, cold: dict, val_log: list[dict], last: dict,
                     stop_reason: str | None) -> Path:
    """``report.md``: the cold start, held-out EM over training, the last step's main metrics, the outputs."""
    lines = [f"# Training run: {cfg.model.path}", "",
             f"{cfg.algorithm.name} ({'LoRA r' + str(cfg.model.lora_rank) if cfg.model.lora_rank else 'full'}), "
             f"{cfg.total_steps} steps of {cfg.data.batch_size} questions x {cfg.algorithm.group_size} samples; "
             f"data {cfg.data.train_file}.", ""]
    if cold.get("mode", "never") != "never":
        lines += ["## Cold start", "", "```", json.dumps(cold, indent=1, default=str), "```", ""]
    if val_log:
        keys = [k for k in ("val/em", "val/searches", "val/format", "val/answered") if any(k in r for r in val_log)]
        lines += ["## Held-out (greedy) over training", "", "| step | " + " | ".join(keys) + " |",
                  "|---|" + "---|" * len(keys)]
        lines += [f"| {r['step']} | " + " | ".join(f"{r.get(k, float('nan')):.3f}" for k in keys) + " |"
                  for r in val_log]
        lines.append("")
    shown = ("reward/mean", "reward/format", "rollout/searches", "rollout/response_len", "actor/kl", "actor/entropy",
             "collapse/same_reward_groups", "time/step")
    lines += ["## Last step", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {last[k]:.4g} |" for k in shown if k in last]
    if stop_reason:
        lines += ["", f"Stopped early: {stop_reason}"]
    lines += ["", "Curves: `curves.png`; every step: `metrics.jsonl`; the final model (LoRA merged): `final/` "
              "(`searchr1 ask --model <dir>/final`, `searchr1 eval --model <dir>/final`)."]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def public_config(cfg: TrainConfig) -> dict:
    """``config_to_dict(cfg)`` with secrets (the retriever token) replaced, for files and logs."""
    d = config_to_dict(cfg)
    if d["data"].get("retriever_token"):
        d["data"]["retriever_token"] = "<redacted>"
    return d
