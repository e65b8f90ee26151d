"""Search-R1's dense retrieval server, reimplemented (our code) as the benchmark's reference.

Source followed: ``search_r1/search/retrieval_server.py`` of PeterGriffinJin/Search-R1 (read at
commit a14dc3a). Its request path, step by step, as done here:

1. ``POST /retrieve`` is a *sync* FastAPI endpoint taking a pydantic model ``{queries: list[str],
   topk: int | None, return_scores: bool}``; Starlette runs it in its thread pool, so concurrent
   requests encode at the same time in different threads. A falsy topk means the default (3).
2. ``batch_search`` walks the queries in batches of ``retrieval_batch_size`` (512) under a tqdm bar;
   per batch: tokenize (fast tokenizer, ``padding=True``, ``truncation=True``, ``max_length`` 256),
   run the HF ``AutoModel`` (``.eval()``) under ``torch.no_grad``, mean-pool with ``masked_fill`` of
   the padding, L2-normalise (not for dpr), ``.cpu().numpy()`` as C-contiguous float32.
3. ``index.search(emb, k)`` on the FAISS index read with ``faiss.read_index``; the ids of the whole
   batch are flattened and each passage is fetched with ``corpus[int(idx)]`` from a HF ``datasets``
   JSON corpus (``load_dataset("json", ...)``), then cut back into rows of k.
4. The response: ``{"result": [[{"document": doc, "score": s}, ...], ...]}`` (bare docs without scores).

Departures, all for a CPU run: the model stays on the CPU (no ``.cuda()`` / ``torch.cuda.empty_cache()``),
and fp16 is off (the shipped script sets ``retrieval_use_fp16=True``; on a CPU fp16 is Search-R1's
slow configuration, fp32 its best). ``--fp16`` restores the shipped setting. Added: ``GET /health``
(the benchmark waits on it); the corpus loads without ``num_proc=4`` (start-up only). Everything else,
including torch's default thread count, is as shipped. The e5 / bge query prefixes follow the
model name as in the original (none for MiniLM).

Run: ``python -m benchmarks.searchr1_reference --index F.faiss --corpus C.jsonl --model DIR --port P``.
"""
import argparse  # no `from __future__ import annotations`: FastAPI reads the local model class

import sys

import numpy as np


class ReferenceEncoder:
    """Search-R1's ``Encoder`` on the CPU: texts → normalised float32 (N, dim)."""

    def __init__(self, model_name: str, model_path: str, max_length: int = 256, fp16: bool = False):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.model_name = model_name.lower()
        self.max_length = max_length
        self.model = AutoModel.from_pretrained(model_path)
        self.model.eval()
        if fp16:
            self.model = self.model.half()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, use_fast=True)

    def encode(self, queries: list[str]) -> np.ndarray:
        torch = self.torch
        if "e5" in self.model_name:
            queries = [f"query: {q}" for q in queries]
        if "bge" in self.model_name:
            queries = [f"Represent this sentence for searching relevant passages: {q}" for q in queries]
        with torch.no_grad():
            inputs = self.tokenizer(queries, max_length=self.max_length, padding=True, truncation=True,
                                    return_tensors="pt")
            out = self.model(**inputs, return_dict=True)
            mask = inputs["attention_mask"]
            hidden = out.last_hidden_state.masked_fill(~mask[..., None].bool(), 0.0)
            emb = hidden.sum(dim=1) / mask.sum(dim=1)[..., None]
            if "dpr" not in self.model_name:
                emb = torch.nn.functional.normalize(emb, dim=-1)
            return emb.detach().cpu().numpy().astype(np.float32, order="C")


class ReferenceRetriever:
    """Search-R1's ``DenseRetriever``: FAISS file + ``datasets`` corpus + :class:`ReferenceEncoder`."""

    def __init__(self, index_path: str, corpus_path: str, encoder: ReferenceEncoder, batch_size: int = 512):
        import datasets
        import faiss

        self.index = faiss.read_index(index_path)
        self.corpus = datasets.load_dataset("json", data_files=corpus_path, split="train")
        self.encoder, self.batch_size = encoder, batch_size

    def batch_search(self, queries: list[str], k: int) -> tuple[list, list]:
        from tqdm import tqdm

        results, scores = [], []
        for start in tqdm(range(0, len(queries), self.batch_size), desc="Retrieval process: "):
            emb = self.encoder.encode(queries[start:start + self.batch_size])
            batch_scores, batch_idxs = self.index.search(emb, k=k)
            batch_scores, batch_idxs = batch_scores.tolist(), batch_idxs.tolist()
            docs = [self.corpus[int(i)] for row in batch_idxs for i in row]
            results.extend(docs[r * k:(r + 1) * k] for r in range(len(batch_idxs)))
            scores.extend(batch_scores)
        return results, scores


def create_reference_app(retriever: ReferenceRetriever, default_topk: int = 3):
    from fastapi import FastAPI
    from pydantic import BaseModel

    class QueryRequest(BaseModel):
        queries: list[str]
        topk: int | None = None
        return_scores: bool = False

    app = FastAPI()

    @app.post("/retrieve")
    def retrieve(request: QueryRequest):  # sync on purpose: Starlette's thread pool, as in Search-R1
        k = request.topk or default_topk
        results, scores = retriever.batch_search(request.queries, k)
        if request.return_scores:
            return {"result": [[{"document": d, "score": s} for d, s in zip(row, srow)]
                               for row, srow in zip(results, scores)]}
        return {"result": results}

    @app.get("/health")
    def health():
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(prog="python -m benchmarks.searchr1_reference", description=__doc__.split("\n")[0])
    p.add_argument("--index", required=True, help="FAISS index file (inner product)")
    p.add_argument("--corpus", required=True, help="JSONL corpus, one {'id', 'contents'} per line in index order")
    p.add_argument("--model", required=True, help="HF encoder directory")
    p.add_argument("--model-name", default="minilm", help="Search-R1's retrieval_method (e5 / bge switch prefixes)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fp16", action="store_true", help="the shipped fp16 setting (slow on a CPU)")
    args = p.parse_args(argv)
    encoder = ReferenceEncoder(args.model_name, args.model, fp16=args.fp16)
    app = create_reference_app(ReferenceRetriever(args.index, args.corpus, encoder))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
