"""The vLLM backend on CPU (vLLM's CPU build) with the real SmolLM2-135M-Instruct in float32: the same greedy
multi-turn search rollouts as HFBackend, weight pushes the engine follows (full and LoRA), a GRPO run with
``rollout.backend=vllm`` and the search-r1 evaluation on vLLM. One engine serves the whole module (building
one takes minutes on 2 cores). Run with ``make test-vllm`` (.venv-vllm); skipped where vLLM is not installed."""
import copy
import json

import pytest
import torch

from searchr1.data.prompts import apply_chat_template, make_prompt
from searchr1.search.base import Document, Hit

pytestmark = pytest.mark.vllm

LOGPROB_BOUND = 1e-3
"""Largest |engine - HF| log-prob allowed on a policy token (float32 on both sides)."""
QUESTIONS = ["Who wrote Hamlet?", "What is the capital of France?", "Which river flows through Cairo?"]
PREFIX = "<think>I should look this up.</think>\n<search>"
"""Opens a search in the prompt: SmolLM2 closes it, the engine injects its corrective message (mask 0) and a
second turn follows (SmolLM2 does not search by itself under the search-r1 prompt)."""


class Retriever:
    """Deterministic passages derived from the query."""

    def search(self, queries, topk):
        return [[Hit(Document(f"{q}#{k}", f"{q.title()} {k}", f"Passage {k}: {q} is described here."), 1.0 / k)
                 for k in range(1, topk + 1)] for q in queries]


@pytest.fixture(scope="module")
def smol():
    from searchr1.models.hf import load_causal_lm
    from searchr1.models.smollm2 import smollm2_dir

    model, tok = load_causal_lm(str(smollm2_dir()), dtype="float32", device="cpu")
    return model.eval(), tok


@pytest.fixture(scope="module")
def engine():
    pytest.importorskip("vllm", reason="vLLM is not installed: `make install-vllm`, then `make test-vllm`")
    from searchr1.rl.config import load_config
    from searchr1.rl.engines import vllm_backend

    cfg = load_config(None, ["model.path=smollm2-135m", "rollout.backend=vllm", "rollout.vllm.max_model_len=2048",
                             "rollout.vllm.enforce_eager=true", "rollout.vllm.kv_cache_gib=0.5",
                             "rollout.max_total_tokens=2048", "rollout.max_prompt_tokens=1024", "device=cpu"])
    return vllm_backend(cfg)


@pytest.fixture
def fresh_engine(engine, smol):
    """The module's engine on SmolLM2's own weights (a test may have pushed others)."""
    engine.sync_weights(smol[0])
    return engine


def _prompts(tok, questions=QUESTIONS):
    return [apply_chat_template(tok, make_prompt(q, "search-r1")) + PREFIX for q in questions]


def _greedy(backend, tok, prompts, max_new=24):
    from searchr1.rollout.backends.base import TurnParams

    ids = [tok.encode(p, add_special_tokens=False) for p in prompts]
    gens = backend.open(ids).generate(list(range(len(ids))), [[]] * len(ids), [max_new] * len(ids),
                                      TurnParams(do_sample=False))
    return [g.token_ids for g in gens]


def _hf(model, tok):
    from searchr1.rollout.backends.hf import HFBackend

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return HFBackend(base, tok)


def test_greedy_multi_turn_search_rollout_matches_hf(fresh_engine, smol):
    from searchr1.rollout import RolloutConfig, RolloutEngine

    model, tok = smol
    cfg = RolloutConfig(max_turns=3, max_turn_tokens=40, max_obs_tokens=64, do_sample=False, seed=0)
    runs = {name: RolloutEngine(backend, Retriever(), tok, cfg).run(_prompts(tok))
            for name, backend in (("hf", _hf(model, tok)), ("vllm", fresh_engine))}
    assert all(t.turns >= 2 for t in runs["hf"]), "a single-turn rollout: nothing was injected"
    worst = 0.0
    for h, v in zip(runs["hf"], runs["vllm"]):
        assert v.response_ids == h.response_ids
        assert v.response_mask == h.response_mask
        assert (v.finish_reason, v.turns, v.searches, v.queries) == (h.finish_reason, h.turns, h.searches, h.queries)
        assert 0 in v.response_mask, "no injected observation in the trajectory"
        diffs = [abs(a - b) for a, b, m in zip(v.response_logprobs, h.response_logprobs, v.response_mask) if m]
        worst = max(worst, max(diffs))
    print(f"max |log p(vLLM) - log p(HF)| over policy tokens: {worst:.2e}")
    assert worst < LOGPROB_BOUND


def test_engine_follows_pushed_weights(fresh_engine, smol):
    from peft import LoraConfig, get_peft_model

    model, tok = smol
    prompts = _prompts(tok, QUESTIONS[:2])
    before = _greedy(fresh_engine, tok, prompts)
    assert before == _greedy(_hf(model, tok), tok, prompts)
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(torch.randn_like(p, generator=torch.Generator().manual_seed(p.numel())) * 0.02)
    seconds = fresh_engine.sync_weights(perturbed)
    after = _greedy(fresh_engine, tok, prompts)
    assert after == _greedy(_hf(perturbed, tok), tok, prompts) and after != before
    print(f"weight sync (full model): {seconds:.2f} s")
    del perturbed
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    trainable = {k: v.clone() for k, v in lora.named_parameters() if v.requires_grad}
    fresh_engine.sync_weights(lora)
    merged = _greedy(fresh_engine, tok, prompts)
    assert merged == _greedy(_hf(lora, tok), tok, prompts) and merged != before
    assert all(torch.equal(v, trainable[k]) for k, v in lora.named_parameters() if v.requires_grad)


def test_grpo_run_on_searchworld_with_vllm(fresh_engine, smol, tmp_path):
    from searchr1.data.world import WorldConfig, generate_world
    from searchr1.data.world_io import write_world
    from searchr1.rl.config import load_config
    from searchr1.rl.trainer import Trainer
    from searchr1.search.index import build_index

    model, tok = smol
    w = generate_world(WorldConfig(seed=3, countries=3, cities=6, organisations=4, people=16, works=4,
                                   dev_frac=0.2, test_frac=0.3))
    write_world(w, tmp_path)
    build_index(tmp_path / "corpus.jsonl", tmp_path / "index")
    cfg = load_config(None, [
        "model.path=smollm2-135m", "model.lora_rank=8", "model.lora_alpha=16", "rollout.backend=vllm",
        "rollout.vllm.max_model_len=2048", "rollout.max_total_tokens=1536", "rollout.max_prompt_tokens=1024",
        f"data.train_file={tmp_path}/train.jsonl", f"data.index_dir={tmp_path}/index",
        "data.batch_size=2", "data.mini_batch_size=2", "data.micro_batch_size=4", "algorithm.group_size=2",
        "rollout.max_turns=2", "rollout.max_turn_tokens=24", "rollout.max_obs_tokens=96",
        "optimizer.actor_lr=0.01", "optimizer.actor_warmup_ratio=0", "total_steps=2", "device=cpu",
        "algorithm.tis_cap=2",
        f"output_dir={tmp_path}/out", "logging.progress_bar=false", "logging.plot=false"])
    cfg.check_inputs()
    # alternating rewards: every group has a learning signal, so each step really updates the adapter
    tr = Trainer(cfg, policy=copy.deepcopy(model), tokenizer=tok, make_backend=lambda policy, tokenizer: fresh_engine,
                 reward_fn=lambda trajs, exs: ([float(i % 2) for i in range(len(trajs))], {}))
    prompts = _prompts(tok, QUESTIONS[:2])
    before = _greedy(fresh_engine, tok, prompts)
    tr.fit()
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "time/weight_sync" in r]
    assert len(steps) == 2 and all(r["time/weight_sync"] > 0 for r in steps)
    for r in steps:
        print(f"step {r['step']}: weight sync {r['time/weight_sync']:.2f} s, |dlogp| mean "
              f"{r['rollout/logprob_abs_diff_mean']:.2e} max {r['rollout/logprob_abs_diff_max']:.2e}")
        assert r["rollout/logprob_abs_diff_max"] < LOGPROB_BOUND
        # truncated importance sampling is on: the weights are ~1 because the engine matches the trainer
        assert abs(r["actor/tis_weight"] - 1.0) < 1e-3 and r["actor/tis_capped"] == 0.0
    assert (tmp_path / "out" / "checkpoints").is_dir() and (tmp_path / "out" / "final").is_dir()
    tr.rollout(tr.train_examples[:1], [0], seed=0, greedy=True)   # pushes step 2's update
    after = _greedy(fresh_engine, tok, prompts)
    assert after == _greedy(_hf(tr.policy, tok), tok, prompts)
    assert after != before, "two updates at lr 0.01 did not change the greedy output"


def test_search_r1_eval_on_vllm_matches_hf(fresh_engine, smol):
    from searchr1.data.qa import QAExample
    from searchr1.eval.methods.search_r1 import SearchR1
    from searchr1.eval.types import EvalContext
    from searchr1.models.generate import Decoding, HFGenerator

    model, tok = smol
    examples = [QAExample(id=str(i), question=q, golden_answers=["x"])
                for i, q in enumerate(QUESTIONS + ["Who painted the Mona Lisa?", "How many legs has a spider?"])]
    preds = {}
    for name, backend in (("hf", None), ("vllm", fresh_engine)):
        ctx = EvalContext(generator=HFGenerator(model, tok), retriever=Retriever(), decoding=Decoding(max_new_tokens=48),
                          max_turns=2, model=model, tokenizer=tok, rollout_backend=backend)
        preds[name] = SearchR1().run(examples, ctx)
    assert len(preds["vllm"]) == 5
    for h, v in zip(preds["hf"], preds["vllm"]):
        assert (v.answer, v.response, v.searches, v.finish_reason) == (h.answer, h.response, h.searches, h.finish_reason)


def test_eval_cli_backend_vllm_gives_the_hf_predictions(fresh_engine, tmp_path, monkeypatch):
    """``searchr1 eval --backend vllm`` on 5 SearchWorld questions: the same greedy predictions as ``--backend hf``.
    The CLI would build its own (compiled) engine on the checkpoint; here it gets the module's engine, and
    the test checks what it asked for."""
    from searchr1.cli import main
    from searchr1.data.world import WorldConfig, generate_world
    from searchr1.data.world_io import write_world
    from searchr1.eval import setup
    from searchr1.models.smollm2 import smollm2_dir
    from searchr1.search.index import build_index

    write_world(generate_world(WorldConfig(seed=0)), tmp_path / "world")
    build_index(tmp_path / "world" / "corpus.jsonl", tmp_path / "index")
    asked = []
    monkeypatch.setattr(setup, "VLLMBackend", lambda path, dtype: asked.append((path, dtype)) or fresh_engine)
    preds = {}
    for backend in ("hf", "vllm"):
        out = tmp_path / backend
        assert main(["eval", "--backend", backend, "--methods", "search-r1", "--data", str(tmp_path / "world"),
                     "--index", str(tmp_path / "index"), "--limit", "5", "--max-new-tokens", "48",
                     "--model", "smollm2-135m", "--dtype", "float32", "--out", str(out)]) == 0
        preds[backend] = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert asked == [(str(smollm2_dir()), "float32")]
    assert len(preds["vllm"]) == 5
    assert [(p["answer"], p["response"]) for p in preds["vllm"]] == [(p["answer"], p["response"]) for p in preds["hf"]]
