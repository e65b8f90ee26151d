"""The trainer on a tiny Qwen2: masking gradients, weight updates, learning, resume."""
import torch

from searchr1.rl.batch import collate, response_logits
from searchr1.rl.config import AlgorithmConfig
from searchr1.rl.learner import compute_actor_loss
from searchr1.rl.trainer import Trainer
from searchr1.rollout.types import Trajectory

LETTERS = set(range(ord("a") - 0, ord("z") + 1))


def letter_ids(tok):
    return {tok.convert_tokens_to_ids(chr(c)) for c in LETTERS}


def letter_reward(tok):
    ids = letter_ids(tok)

    def fn(trajs, examples):
        scores = [sum(i in ids for i, m in zip(t.response_ids, t.response_mask) if m) / max(1, sum(t.response_mask))
                  for t in trajs]
        return scores, {"letters": sum(scores) / len(scores)}
    return fn


def mixed_trajectories():
    # policy tokens, then an injected block (mask 0), then policy tokens again
    return [
        Trajectory(prompt_ids=[5, 6, 7], response_ids=[10, 11, 12, 13, 14, 15], response_mask=[1, 1, 0, 0, 1, 1],
                   group_id=0),
        Trajectory(prompt_ids=[8, 9], response_ids=[20, 21, 22, 23], response_mask=[1, 0, 0, 1], group_id=0),
    ]


def test_injected_tokens_get_exactly_zero_gradient_with_masking(tiny):
    model, _ = tiny
    batch = collate(mixed_trajectories(), [1.0, 0.0])
    batch.advantages = torch.tensor([[1.0] * 6, [-1.0] * 4 + [0.0] * 2])
    batch.ref_logp = torch.zeros(2, 6) - 5.0
    for mask_retrieved in (True, False):
        algo = AlgorithmConfig(name="grpo", entropy_coef=0.01, mask_retrieved=mask_retrieved)
        logits = response_logits(model, batch).detach().requires_grad_(True)
        loss, _ = compute_actor_loss(logits, batch, algo, kl_coef=0.1)
        loss.backward()
        g = logits.grad.abs().sum(-1)                                    # (B, R)
        injected = (batch.valid_mask == 1) & (batch.policy_mask == 0)
        assert torch.all(g[batch.policy_mask == 1] > 0)
        if mask_retrieved:
            assert torch.all(g[injected] == 0.0)
        else:
            assert torch.all(g[injected] > 0.0)
        assert torch.all(g[batch.valid_mask == 0] == 0.0)                  # padding never counts


def test_one_grpo_step_changes_weights_and_logs(tiny, questions, tmp_path, tiny_config):
    model, tok = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = tiny_config(tmp_path, total_steps=1)
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=letter_reward(tok))
    m = tr.fit()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 0.9 * len(before)
    for key in ("rollout/masked_frac", "reward/mean", "actor/entropy", "actor/grad_norm", "time/update"):
        assert key in m
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1
    assert (tmp_path / "final" / "config.json").is_file()


def test_fused_optimizer_gives_the_same_update(tiny_dir, questions, tmp_path, tiny_config):
    """optimizer.fused runs torch's fused AdamW for the policy and the critic: the same weights to rounding."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    weights = {}
    for fused in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_dir)
        cfg = tiny_config(tmp_path / str(fused), total_steps=2, algorithm__name="ppo", algorithm__group_size=1,
                          optimizer__fused=str(fused).lower(), optimizer__critic_warmup_ratio=0.0)
        tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=letter_reward(tok),
                     log_to_disk=False)
        assert tr.learner.opt.defaults["fused"] is (True if fused else None)
        assert tr.learner.copt.defaults["fused"] is (True if fused else None)
        for _ in range(2):
            tr.train_step()
        weights[fused] = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in
               AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict().items())       # it trained
    for k, v in weights[False].items():
        torch.testing.assert_close(weights[True][k], v, atol=1e-6, rtol=1e-5, msg=k)


def _letter_mass(model, tok, prompts):
    """Probability the policy puts on a lowercase letter as the first response token."""
    ids = sorted(letter_ids(tok))
    with torch.no_grad():
        enc = [tok.encode(p, add_special_tokens=False) for p in prompts]
        total = 0.0
        for e in enc:
            logits = model(input_ids=torch.tensor([e])).logits[0, -1]
            total += float(torch.softmax(logits, -1)[ids].sum())
    return total / len(enc)


def test_rl_raises_the_reward(tiny, questions, tmp_path, tiny_config):
    torch.manual_seed(0)
    model, tok = tiny
    cfg = tiny_config(tmp_path, total_steps=30, **{"optimizer__actor_lr": 0.02, "logging__jsonl": "false"})
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=letter_reward(tok))
    prompts = tr.prompts_for(questions[:8])
    before = _letter_mass(model, tok, prompts)
    tr.fit()
    after = _letter_mass(model, tok, prompts)
    assert before < 0.2
    assert after > before + 0.3, (before, after)


def test_resume_is_bit_for_bit(tiny_dir, questions, tmp_path, tiny_config):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def run(out, steps, resume, every):
        torch.manual_seed(123)
        model = AutoModelForCausalLM.from_pretrained(tiny_dir)
        tok = AutoTokenizer.from_pretrained(tiny_dir)
        cfg = tiny_config(out, total_steps=steps, **{"checkpoint__every": every, "algorithm__kl_coef": 0.01,
                                                     "data__mini_batch_size": 2, "algorithm__ppo_epochs": 2})
        tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=letter_reward(tok))
        tr.fit(resume=resume)
        return model

    straight = run(tmp_path / "a", 4, False, 0)
    run(tmp_path / "b", 2, False, 2)
    resumed = run(tmp_path / "b", 4, True, 2)
    for (k, v), (_, w) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(v, w), k


# ----------------------------------------------------------------------------- `searchr1 train` failures
def _train_cli(tmp_path, model_path, *extra):
    """``searchr1 train`` on 4 questions, one GRPO step; returns (exit code, output_dir)."""
    import json

    from searchr1.cli import main

    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "question": f"what is {i}", "golden_answers": [str(i)]}) + "\n"
                            for i in range(4)))
    out = tmp_path / "run"
    rc = main(["train", f"model.path={model_path}", f"data.train_file={data}", "data.prompt_template=Q: {question} A:",
               "rollout.max_turns=1", "rollout.max_turn_tokens=3", "rollout.max_prompt_tokens=64",
               "rollout.max_total_tokens=128", "algorithm.group_size=2", "data.batch_size=2",
               "data.mini_batch_size=2", "total_steps=1", "logging.progress_bar=false", "logging.plot=false",
               f"output_dir={out}", "device=cpu", *extra])
    return rc, out


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "Loading weights" not in ln]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


class _OneHit:
    def search(self, queries, topk):
        from searchr1.search.base import Document, Hit

        return [[Hit(Document("d0", "T", "text"), 1.0)] for _ in queries]


def test_train_against_a_dead_server_stops_before_any_step(tiny_dir, tmp_path, capsys, monkeypatch):
    import socket

    monkeypatch.delenv("SEARCHR1_TOKEN", raising=False)
    with socket.socket() as s:                                   # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    rc, out = _train_cli(tmp_path, tiny_dir, f"data.retriever_url={url}")
    line = _one_error_line(capsys)
    assert rc == 1 and url in line and "/health" in line, line
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()


def test_train_against_a_token_protected_server(tiny_dir, tmp_path, capsys, monkeypatch):
    """Without the token: one error line naming the fix, exit 1, no step; with it: the run trains."""
    import json

    from searchr1.search.server import BackgroundServer, ServerConfig, create_app

    monkeypatch.delenv("SEARCHR1_TOKEN", raising=False)
    with BackgroundServer(create_app(_OneHit(), ServerConfig(token="s3cret", batch_wait_ms=0))) as srv:
        rc, out = _train_cli(tmp_path / "a", tiny_dir, f"data.retriever_url={srv.url}")
        line = _one_error_line(capsys)
        assert rc == 1 and "HTTP 401" in line and "data.retriever_token" in line, line
        assert not (out / "metrics.jsonl").exists()
        rc, out = _train_cli(tmp_path / "b", tiny_dir, f"data.retriever_url={srv.url}", "data.retriever_token=s3cret")
        assert rc == 0 and (out / "checkpoints" / "step_000001" / "COMPLETE").is_file()
        assert "s3cret" not in (out / "config.json").read_text()
        row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        assert row["search/failures_total"] == 0 and "search/calls_total" in row
        monkeypatch.setenv("SEARCHR1_TOKEN", "s3cret")                  # the environment works too
        rc, _ = _train_cli(tmp_path / "c", tiny_dir, f"data.retriever_url={srv.url}")
        assert rc == 0


def test_train_loads_the_demo_copy_model(tmp_path):
    from pathlib import Path

    import searchr1

    demo_base = Path(searchr1.__file__).parent / "assets" / "demo_base"
    rc, out = _train_cli(tmp_path, demo_base, "rollout.search_enabled=false")
    assert rc == 0
    assert '"searchr1-copy-qwen2"' in (out / "final" / "config.json").read_text()


def test_uncached_hub_model_fails_at_once_offline(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    rc, _ = _train_cli(tmp_path, "no-such-org/no-such-model", "rollout.search_enabled=false")
    line = _one_error_line(capsys)
    assert rc == 1 and "HF_HUB_OFFLINE=1" in line and "no-such-org/no-such-model" in line, line
    assert time.perf_counter() - t0 < 5.0


class _AlwaysSearches:
    """A backend whose every turn is ``<search> q </search>`` (drives the retriever every turn)."""

    def __init__(self, tok):
        self.ids = tok.encode("<search> q </search>", add_special_tokens=False)

    def open(self, prompts, seed=None):
        from searchr1.rollout.backends.base import Generation

        ids = self.ids

        class Session:
            def generate(self, rows, appended, max_new_tokens, params):
                return [Generation(list(ids[:n]), [-1.0] * len(ids[:n]), "stop", "</search>")
                        for n in max_new_tokens]

            def release(self, rows):
                pass

            def close(self):
                pass
        return Session()


class _DeadRetriever:
    def search(self, queries, topk):
        from searchr1.search.base import SearchError

        raise SearchError("search at http://127.0.0.1:9/retrieve failed after 4 attempts; last error: ConnectError")


def test_a_retrieval_outage_mid_run_stops_training_unless_policy_record(tiny, questions, tmp_path, tiny_config):
    """Searches failing during training: abort (default) raises RetrievalOutage out of fit, no
    checkpoint written; record trains through and logs the totals."""
    import json

    import pytest

    from searchr1.search.guard import RetrievalOutage

    model, tok = tiny
    for policy in ("abort", "record"):
        cfg = tiny_config(tmp_path / policy, total_steps=1, rollout__search_enabled="true", rollout__max_turns=3,
                          rollout__max_turn_tokens=32, rollout__max_total_tokens=1024,
                          data__search_failure_policy=policy,
                          data__max_consecutive_search_failures=2)
        tr = Trainer(cfg, policy=model, tokenizer=tok, retriever=_DeadRetriever(), train_examples=questions,
                     make_backend=lambda p, t: _AlwaysSearches(t), reward_fn=letter_reward(tok))
        if policy == "abort":
            with pytest.raises(RetrievalOutage, match="2 searches in a row failed"):
                tr.fit()
            assert not (tmp_path / policy / "checkpoints").exists()
        else:
            m = tr.fit()
            row = json.loads((tmp_path / policy / "metrics.jsonl").read_text().splitlines()[0])
            assert m["search/failures_total"] == row["search/failures_total"] >= 2
            assert m["rollout/search_failures"] > 0
