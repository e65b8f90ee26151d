"""Model loading: any HF causal LM and the embedded SmolLM2-135M-Instruct; text generation (``generate``).

OpenAI-compatible endpoints live in :mod:`searchr1.rollout.backends.openai` (a Generator and an engine backend).

``copy*.py`` (the demo's copy-capable tiny model) lives here too; ``signature.py`` says what a model's
``forward`` accepts (read by the rollout backend and the trainer alike).
"""
from searchr1.models.generate import Completion, Decoding, Generator, HFGenerator, Transcript
from searchr1.models.hf import load_causal_lm, model_fingerprint, smollm2
from searchr1.models.smollm2 import SMOLLM2_NAMES, smollm2_dir, smollm2_gguf

__all__ = ["Completion", "Decoding", "Generator", "HFGenerator", "Transcript", "load_causal_lm",
           "model_fingerprint", "SMOLLM2_NAMES", "smollm2",
           "smollm2_dir", "smollm2_gguf"]
