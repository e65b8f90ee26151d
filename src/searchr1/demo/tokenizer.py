"""A byte-level BPE tokenizer trained locally on SearchWorld text (the ``tokenizers`` library).

The protocol tags (``<think>``, ``<search>``, ``<information>``, ``<answer>`` and their
closing twins) are single ordinary tokens (not "special": decoding keeps them), and
``<|endoftext|>`` is both EOS and padding. The tokenizer has no chat template, so
prompts are fed raw, as the data module does for such tokenizers.
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
TAGS = ("<think>", "</think>", "<search>", "</search>", "<information>", "</information>",
        "<answer>", "</answer>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train BPE on ``texts``; returns a ready Hugging Face fast tokenizer."""
    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size} is below the 256 byte symbols plus tags; use >= 300")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS, bos_token=None,
                                   padding_side="left", model_max_length=4096)
