"""Generation backends behind one interface (:class:`~searchr1.rollout.backends.base.Backend`).

``hf.HFBackend`` (transformers, CPU/GPU), ``vllm.VLLMBackend`` (GPU, optional ``gpu`` extra),
``openai.ChatBackend`` (text-level: OpenAI-compatible endpoints and any text Generator; evaluation) and
``scripted.ScriptedBackend`` (plays back fixed text; tests and examples). Import the module you need;
this package imports none of the heavy libraries.
"""
from searchr1.rollout.backends.base import Backend, BackendSession, Generation, TurnParams

__all__ = ["Backend", "BackendSession", "Generation", "TurnParams"]
