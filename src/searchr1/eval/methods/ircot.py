"""``ircot`` — Interleaving Retrieval with Chain-of-Thought (Trivedi et al., 2023).

Loop, per question (rows of a batch advance together):

1. retrieve ``topk`` passages with the question;
2. generate the *next single sentence* of the reasoning, given the question, every
   passage collected so far and the reasoning so far;
3. stop when the sentence gives the answer ("... the answer is X" or ``<answer>``);
   otherwise use the sentence as the next query, add its new passages, and go to 2;
4. after ``ctx.ircot_steps`` sentences without an answer, the answer is forced by
   continuing the reasoning with "So the answer is:".

As in IRCoT, the reasoning doubles as the reader: the answer is read off the chain
of thought. Departures: no few-shot demonstrations (the prompt is zero-shot, as for
the other baselines here), and the passage pool is capped at ``max_docs`` (IRCoT caps
it at 15), keeping the most recent when it overflows.

Why this is not a rollout-engine loop: IRCoT's loop is driven by retrieval, not by the tag
protocol. Each step re-renders the whole prompt (the question plus the grown passage pool) and
asks for one more sentence that continues the model's own reasoning; nothing is appended to a
growing context, and no action is parsed from the text. Its generations go through
``ctx.generator``, the generation path of the single-prompt methods.
"""
from __future__ import annotations

import re
import time

from searchr1.data.prompts import normalize_question, render_passages
from searchr1.eval.methods.base import Method, user_prompt
from searchr1.eval.types import EvalContext, Prediction
from searchr1.models.generate import Decoding

IRCOT_TEMPLATE = (
    "Answer the question using the documents below. Reason step by step, one sentence at a "
    "time. When you know the answer, finish with the sentence \"So the answer is: <answer> X "
    "</answer>.\" where X is the short answer.\n"
    "Documents:\n{passages}"
    "Question: {question}\n"
)
FORCE_ANSWER = " So the answer is: <answer>"
SENTENCE_STOPS = [". ", ".\n", "? ", "! ", "\n", "</answer>"]
_SENTENCE = re.compile(r"^\s*(.+?[.!?])(?=\s|$)", re.DOTALL)


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (all of it when no sentence end is found)."""
    if "</answer>" in text:
        return text[: text.index("</answer>") + len("</answer>")].strip()
    m = _SENTENCE.match(text)
    return (m.group(1) if m else text).strip()


def gives_answer(sentence: str) -> bool:
    return "</answer>" in sentence or "answer is" in sentence.lower()


class IRCoT(Method):
    name, needs_retriever, answer_rules = "ircot", True, ("tag", "answer-is")
    templates = {"ircot": IRCOT_TEMPLATE, "ircot_force": FORCE_ANSWER}

    def __init__(self, max_docs: int = 15, sentence_tokens: int = 64):
        if max_docs < 1 or sentence_tokens < 1:
            raise ValueError("max_docs and sentence_tokens must be >= 1.")
        self.max_docs, self.sentence_tokens = max_docs, sentence_tokens

    def describe(self) -> dict:
        return {**super().describe(), "max_docs": self.max_docs, "sentence_tokens": self.sentence_tokens}

    def run(self, examples, ctx: EvalContext, dataset: str = "") -> list[Prediction]:
        started = time.perf_counter()
        n = len(examples)
        docs: list[dict] = [{} for _ in range(n)]         # doc id -> Hit, insertion ordered
        cot = ["" for _ in range(n)]
        st = [dict(searches=0, queries=[], retrieved_ids=[], search_failures=0, response_tokens=0,
                   turns=0, valid_actions=0, invalid_actions=0, finish_reason="max_steps") for _ in range(n)]

        def retrieve(rows: list[int], queries: list[str]) -> None:
            hits, errors = ctx.search(queries)
            for i, q, h, err in zip(rows, queries, hits, errors):
                st[i]["searches"] += 1
                st[i]["queries"].append(q)
                st[i]["retrieved_ids"].append([x.doc.id for x in h])
                st[i]["search_failures"] += int(bool(err))
                for x in h:
                    docs[i].pop(x.doc.id, None)
                    docs[i][x.doc.id] = x
                while len(docs[i]) > self.max_docs:
                    docs[i].pop(next(iter(docs[i])))

        def transcript(i: int, suffix: str = ""):
            prompt = IRCOT_TEMPLATE.replace("{passages}", render_passages(docs[i].values())) \
                                   .replace("{question}", normalize_question(examples[i].question))
            t = user_prompt(prompt)
            if cot[i] + suffix:
                t.add("model", cot[i] + suffix)
            return t

        sent_dec = Decoding(max_new_tokens=min(self.sentence_tokens, ctx.decoding.max_new_tokens),
                            temperature=ctx.decoding.temperature, top_p=ctx.decoding.top_p, seed=ctx.decoding.seed)
        retrieve(list(range(n)), [ex.question for ex in examples])
        active = list(range(n))
        for _ in range(ctx.ircot_steps):
            if not active:
                break
            comps = ctx.generator.complete([transcript(i) for i in active], sent_dec, stop=SENTENCE_STOPS)
            next_rows, next_queries = [], []
            for i, c in zip(active, comps):
                sentence = first_sentence(c.text)
                st[i]["turns"] += 1
                st[i]["response_tokens"] += c.n_tokens
                cot[i] += (" " if cot[i] else "") + sentence
                st[i]["valid_actions" if sentence else "invalid_actions"] += 1
                if gives_answer(sentence):
                    st[i]["finish_reason"] = "answer"
                elif sentence:
                    next_rows.append(i)
                    next_queries.append(sentence)
                # an empty step cannot be a query: the row stops and its answer is forced
            if next_rows:
                retrieve(next_rows, next_queries)
            active = next_rows
        forced = [i for i in range(n) if st[i]["finish_reason"] != "answer"]
        if forced:
            comps = ctx.generator.complete([transcript(i, FORCE_ANSWER) for i in forced], sent_dec,
                                           stop=["</answer>", "\n"])
            for i, c in zip(forced, comps):
                text = c.text if c.text.endswith("</answer>") else c.text.rstrip("\n") + "</answer>"
                cot[i] += FORCE_ANSWER + text
                st[i]["turns"] += 1
                st[i]["response_tokens"] += c.n_tokens
        preds = []
        for i, ex in enumerate(examples):
            # the final transcript: the prompt with all passages, then the whole chain of thought
            t = transcript(i)
            preds.append(self.finish(ex, dataset, t, started, **st[i]))
        return preds
