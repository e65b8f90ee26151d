"""metrics.jsonl holds one run's rows, each step once; earlier rows are set aside, never deleted."""
import json

from searchr1.rl.config import LoggingConfig
from searchr1.rl.tracking import Tracker


def _run(out, start, steps):
    cfg = LoggingConfig(progress_bar=False, plot=False)
    t = Tracker(out, cfg, total_steps=10, start_step=start)
    for s in steps:
        t.log(s, {"reward/mean": float(s)})
    t.close()


def _steps(path):
    return [json.loads(x)["step"] for x in path.read_text().splitlines()]


def test_fresh_run_sets_old_metrics_aside_and_resume_drops_redone_steps(tmp_path):
    _run(tmp_path, 0, [1, 2, 3, 4])
    _run(tmp_path, 0, [1, 2, 3])  # a new run into the same directory
    assert _steps(tmp_path / "metrics.prev-1.jsonl") == [1, 2, 3, 4]
    assert _steps(tmp_path / "metrics.jsonl") == [1, 2, 3]
    _run(tmp_path, 2, [3, 4, 5])  # resumed from the step-2 checkpoint: step 3 is redone
    assert _steps(tmp_path / "metrics.jsonl") == [1, 2, 3, 4, 5]
    assert _steps(tmp_path / "metrics.superseded.jsonl") == [3]
