"""The direct decoding step computes what the transformers forward computes, for every supported
architecture variant, and the backend falls back to the transformers forward (saying why) otherwise."""
import copy

import pytest
import torch
from transformers import DynamicCache

from searchr1.rollout.backends.base import TurnParams
from searchr1.rollout.backends.direct_decode import DirectDecodeStep, unsupported_reason
from searchr1.rollout.backends.hf import HFBackend

V = 300


def _prefilled(model):
    """A cache after a left-padded prefill whose second row also has a masked column in the middle."""
    ids = torch.randint(0, V, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, :3] = 0          # left padding
    mask[1, 4] = 0           # a masked column inside a row (an observation shorter than others)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
    return cache, mask, pos[:, -1:] + 1


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "llama-bias", "qwen2-bf16"])
def test_direct_step_matches_the_transformers_forward(kind, llama_family):
    bf16 = kind.endswith("-bf16")
    model = llama_family(kind.removesuffix("-bf16"))
    if bf16:                 # the RMSNorm path that normalises in fp32 and casts back
        model = model.to(torch.bfloat16)
    assert unsupported_reason(model) is None
    cache, mask, pos = _prefilled(model)
    step = DirectDecodeStep(model)
    c_hf, c_direct = copy.deepcopy(cache), copy.deepcopy(cache)
    for t in range(4):       # several steps: each appends to the cache it is given
        ids = torch.randint(0, V, (3, 1))
        mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
        with torch.inference_mode():
            ref = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=c_hf, use_cache=True).logits[:, -1]
            got = step(ids, mask, pos, c_direct)
        tol = 2e-2 if bf16 else 1e-5
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
        pos = pos + 1
    assert c_direct.get_seq_length() == c_hf.get_seq_length() == 7 + 4


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "llama-bias"])
@pytest.mark.parametrize("onto", ["empty cache", "filled cache"])
def test_direct_prefill_matches_the_transformers_forward(kind, onto, llama_family):
    """Several new tokens per row (a prompt prefill, or observations of different lengths appended to a
    cache with padding): the same last-column logits and the same keys/values at every real column.
    Three layers: the last runs its query, attention and MLP at the last column only."""
    model = llama_family(kind, layers=3)
    if onto == "filled cache":
        cache, mask, start = _prefilled(model)
    else:
        cache, mask, start = DynamicCache(config=model.config), torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 1)
    width, lengths = 5, (5, 2, 4)                      # left-padded new block, as HFSession._prefill lays it out
    ids = torch.randint(0, V, (3, width))
    new = torch.zeros(3, width, dtype=torch.long)
    for r, n in enumerate(lengths):
        new[r, width - n:] = 1
    pos = (start.long() + (new.cumsum(1) - 1).clamp(min=0))
    mask = torch.cat([mask, new], dim=1)
    c_hf, c_direct = copy.deepcopy(cache), copy.deepcopy(cache)
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=c_hf, use_cache=True).logits[:, -1]
        got = DirectDecodeStep(model)(ids, mask, pos, c_direct)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    real = mask.bool()
    for la_hf, la_direct in zip(c_hf.layers, c_direct.layers):
        for a, b in ((la_hf.keys, la_direct.keys), (la_hf.values, la_direct.values)):
            assert a.shape == b.shape
            torch.testing.assert_close(b.transpose(1, 2)[real], a.transpose(1, 2)[real], rtol=1e-5, atol=1e-5)


def _assert_next_step_matches(model, step):
    """One decoding step after a fresh prefill: the direct step's logits equal the transformers forward's."""
    cache, mask, pos = _prefilled(model)
    ids = torch.randint(0, V, (3, 1))
    mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
    c2 = copy.deepcopy(cache)
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True).logits[:, -1]
        torch.testing.assert_close(step(ids, mask, pos, c2), ref, rtol=1e-5, atol=1e-5)


def test_direct_step_reads_the_live_weights(llama_family):
    """No copies: an optimizer update made after construction is seen by the next step."""
    model = llama_family("qwen2")
    step = DirectDecodeStep(model)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(-3.0)
    _assert_next_step_matches(model, step)


def test_refresh_follows_replaced_parameter_objects(llama_family):
    model = llama_family("qwen2")
    step = DirectDecodeStep(model)
    up = model.model.layers[0].mlp.up_proj
    up.weight = torch.nn.Parameter(torch.randn_like(up.weight))     # a new object, not an in-place update
    step.refresh()                                                  # HFBackend does this at every open()
    _assert_next_step_matches(model, step)


def _generate(model, tok, direct: bool):
    backend = HFBackend(model, tok, direct_decode=direct)
    prompts = [tok.encode("Q: who wrote Hamlet?\n")] * 3 + [tok.encode("Q: capital of France?\n")] * 3
    session = backend.open(prompts, seed=5)
    out, appended = [], [[] for _ in prompts]
    for turn in range(2):   # differing budgets: rows stop early and get parked
        gens = session.generate(range(6), appended, [3 + 4 * (i % 3) for i in range(6)], TurnParams(temperature=1.0))
        out.append([(g.token_ids, g.logprobs) for g in gens])
        appended = [tok.encode(f" obs {turn}/{i}") for i in range(6)]
    session.close()
    return backend, out


def test_backend_samples_the_same_tokens_with_and_without_the_direct_step(tiny_qwen, tok):
    on, a = _generate(tiny_qwen, tok, True)
    off, b = _generate(tiny_qwen, tok, False)
    assert on.decode_path == "direct"
    assert off.decode_path == "transformers forward (direct_decode=False)"
    for turn_a, turn_b in zip(a, b):
        for (ta, la), (tb, lb) in zip(turn_a, turn_b):
            assert ta == tb
            assert la == pytest.approx(lb, abs=1e-4)


def test_unsupported_models_use_the_transformers_forward_and_say_why(tok, llama_family):
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=1, n_head=2))
    assert "GPT2LMHeadModel is not one of" in unsupported_reason(gpt2)

    lora = get_peft_model(llama_family("qwen2"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert "is not one of" in unsupported_reason(lora)                       # the peft wrapper
    assert "LoRA adapter" in unsupported_reason(lora.get_base_model())       # the wrapped projections

    sliding = Qwen2ForCausalLM(Qwen2Config(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                           num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True,
                                           sliding_window=8, max_window_layers=0))
    assert "sliding-window" in unsupported_reason(sliding)

    hooked = llama_family("qwen2")
    hooked.model.layers[0].register_forward_hook(lambda *a: None)
    assert "hooks" in unsupported_reason(hooked)
    backend = HFBackend(hooked, tok)
    assert backend.decode_path.startswith("transformers forward (the model has forward hooks")
    with pytest.raises(ValueError, match="direct decoding does not support this model: .*hooks"):
        DirectDecodeStep(hooked)


@pytest.mark.parametrize("rope", ["default", "dynamic"])
def test_rotary_table_equals_the_rotary_module(rope, llama_family):
    """The decoding step's cos / sin table gives exactly what the model's rotary module gives, past the
    table's first size (it grows) and in bf16; a rope whose frequencies depend on the sequence length
    (dynamic) is not tabulated but computed by the module every time."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from searchr1.models.llama_direct import RotaryTable, rope as apply_rope

    if rope == "default":
        rot = llama_family("qwen2").model.rotary_emb
    else:
        cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                          num_attention_heads=4, max_position_embeddings=64,
                          rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0})
        rot = LlamaForCausalLM(cfg).model.rotary_emb
    table = RotaryTable(rot)
    assert table.static == (rope == "default")
    for dtype in (torch.float32, torch.bfloat16):
        for hi in (40, 700):                      # 700: past the first table (256 positions)
            pos = torch.randint(0, hi, (3, 5))
            x = torch.zeros(3, 5, 8, dtype=dtype)
            cos, sin = table(x, pos)
            ref_cos, ref_sin = rot(x, pos)
            half = ref_sin.shape[-1] // 2
            assert cos.dtype == dtype and cos.shape == (3, 1, 5, ref_cos.shape[-1])
            assert torch.equal(cos[:, 0], ref_cos)
            assert torch.equal(sin[:, 0, ..., half:], ref_sin[..., half:])
            assert torch.equal(sin[:, 0, ..., :half], -ref_sin[..., :half])    # folded: first half negated
            # the folded sin with roll is transformers' x * cos + rotate_half(x) * sin, exactly
            q = torch.randn(3, 2, 5, ref_cos.shape[-1], dtype=dtype)
            x1, x2 = q.chunk(2, dim=-1)
            ref = q * ref_cos[:, None] + torch.cat((-x2, x1), dim=-1) * ref_sin[:, None]
            assert torch.equal(apply_rope(q, cos, sin), ref)
    if rope == "default":
        assert table.table.shape[0] == 1024
