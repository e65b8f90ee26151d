"""What every evaluation method consumes (:class:`EvalContext`) and produces (:class:`Prediction`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from searchr1.models.generate import Decoding, Generator
from searchr1.search.base import Hit, Retriever, SearchError


@dataclass
class EvalContext:
    """The generator, the retriever and the settings shared by all methods of one run."""

    generator: Generator
    """Local model (``HFGenerator``) or API model (``OpenAIChatBackend``): the single-prompt methods and
    IRCoT call it; the agentic methods run it under the rollout engine when there is no local model."""
    retriever: Retriever | None = None
    """None is allowed only for methods that never search (direct, cot, r1)."""
    topk: int = 3
    """Passages per search (and for ``rag``)."""
    decoding: Decoding = field(default_factory=Decoding)
    """Per-call decoding settings; greedy by default."""
    max_turns: int = 4
    """Turns of the agentic methods (search-o1, search-r1); the last turn may only answer."""
    ircot_steps: int = 4
    """IRCoT: reasoning sentences (each one a new query) before the answer is forced."""
    model: object | None = None
    """The local model and tokenizer behind ``generator`` (search-r1, search-o1 and ask run the rollout
    engine's HFBackend on them)."""
    tokenizer: object | None = None
    rollout_backend: object | None = None
    """The rollout backend those engine methods run on instead (``--backend vllm``: a ``VLLMBackend`` on the
    same checkpoint); None = HFBackend on ``model``."""

    def __post_init__(self):
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}.")
        if self.max_turns < 1 or self.ircot_steps < 1:
            raise ValueError("max_turns and ircot_steps must be >= 1.")

    def search(self, queries: list[str]) -> tuple[list[list[Hit]], list[str | None]]:
        """Hits per query and an error per query (None when it succeeded).

        A failed search is an observation, never a crash: the batch is retried one query
        at a time so a single bad query does not fail the others.
        """
        if self.retriever is None:
            raise ValueError("this method needs a retriever; pass --index DIR or --server URL.")
        if not queries:
            return [], []
        try:
            return self.retriever.search(list(queries), self.topk), [None] * len(queries)
        except SearchError:
            hits, errors = [], []
            for q in queries:
                try:
                    hits.append(self.retriever.search([q], self.topk)[0])
                    errors.append(None)
                except SearchError as e:
                    hits.append([])
                    errors.append(str(e))
            return hits, errors


@dataclass
class Prediction:
    """One answered question, with its trajectory and metrics (one line of predictions.jsonl)."""

    method: str
    dataset: str
    id: str
    question: str
    golden_answers: list[str]
    answer: str | None                 # the extracted final answer (None: none given)
    answer_source: str                 # "tag" | "answer-is" | "plain" | "none"
    response: str                      # everything after the prompt (model + injected text)
    segments: list[list[str]] = field(default_factory=list)  # [source, text]: "model" | "env"
    em: float = 0.0
    subem: float = 0.0
    f1: float = 0.0
    turns: int = 0
    searches: int = 0
    response_tokens: int = 0           # tokens the model generated over all its calls (search-o1's
                                       # reason-in-documents calls included); injected text excluded
    invalid_actions: int = 0
    valid_actions: int = 0
    search_failures: int = 0
    queries: list[str] = field(default_factory=list)
    retrieved_ids: list[list[str]] = field(default_factory=list)
    evidence_recall: float | None = None  # share of gold evidence docs retrieved (None: no evidence ids)
    finish_reason: str = ""
    seconds: float = 0.0

    def key(self) -> tuple[str, str, str]:
        return (self.method, self.dataset, self.id)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> Prediction:
        return cls(**row)
