"""Collapse diagnostics: hand-computed on constructed trajectories, logged every step, guarded."""
import math

import pytest

from searchr1.rl.diagnostics import collapse_metrics, collapse_warnings
from searchr1.rl.trainer import Trainer
from searchr1.rollout.types import Trajectory


def traj(group, searches, logps, mask, valid=1, invalid=0):
    return Trajectory(prompt_ids=[1], response_ids=list(range(len(mask))), response_mask=mask,
                      response_logprobs=logps, group_id=group, searches=searches, valid_actions=valid,
                      invalid_actions=invalid)


def test_hand_computed_metrics():
    trajs = [traj(0, 0, [-1.0, 0.0], [1, 0]), traj(0, 1, [-3.0, -5.0], [1, 1]),     # group 0: rewards 1, 1
             traj(1, 2, [-2.0], [1], invalid=1), traj(1, 4, [-0.5], [1])]          # group 1: rewards 0, 1
    m = collapse_metrics(trajs, [1.0, 1.0, 0.0, 1.0])
    assert m["collapse/same_reward_groups"] == 0.5
    assert [m[f"collapse/searches_{b}"] for b in ("0", "1", "2", "3+")] == [0.25, 0.25, 0.25, 0.25]
    assert m["collapse/rewarded_logp"] == pytest.approx((-1.0 - 3.0 - 5.0 - 0.5) / 4)   # policy tokens only
    assert m["collapse/invalid_rate"] == pytest.approx(1 / 5)
    nothing = collapse_metrics(trajs, [0.0] * 4)
    assert nothing["collapse/same_reward_groups"] == 1.0 and math.isnan(nothing["collapse/rewarded_logp"])


def test_warnings_name_the_threshold_and_ignore_nan():
    m = {"collapse/same_reward_groups": 0.9, "collapse/rewarded_logp": -4.0, "collapse/invalid_rate": 0.5}
    w = collapse_warnings(m, 0.8, -3.0, 0.4)
    assert len(w) == 3 and "guards.max_same_reward_groups=0.8" in w[0] and "likelihood displacement" in w[1]
    assert collapse_warnings({"collapse/rewarded_logp": math.nan}, None, -3.0, None) == []


def test_every_step_logs_them_and_a_guard_stops_the_run(tiny, questions, tmp_path, tiny_config):
    model, tok = tiny
    cfg = tiny_config(tmp_path, total_steps=3, **{"guards__max_invalid_rate": "-1", "guards__early_stop": "true",
                                                  "logging__jsonl": "false"})
    half = lambda trajs, exs: ([float(i % 2) for i in range(len(trajs))], {"em": 0.5})
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=half, log_to_disk=False)
    m = tr.fit()
    assert {"collapse/same_reward_groups", "collapse/rewarded_logp", "collapse/searches_0",
            "collapse/invalid_rate"} <= set(m)
    assert m["collapse/same_reward_groups"] == 0.0 and m["collapse/rewarded_logp"] < 0
    assert tr.step == 1 and "guards.max_invalid_rate=-1" in tr.stop_reason
