"""Evaluation: the paper's baselines and Search-R1 as methods, reports, protocol manifests.

Typical use::

    from searchr1.eval import EvalConfig, EvalContext, evaluate
    from searchr1.eval.setup import make_generator, make_retriever

    retriever, retriever_info = make_retriever(index="runs/index")
    bundle = make_generator("smollm2-135m")
    ctx = EvalContext(bundle.generator, retriever, topk=3, model=bundle.model, tokenizer=bundle.tokenizer)
    evaluate({"nq": examples}, ctx, EvalConfig(methods=["direct", "rag", "search-r1"]), "runs/eval",
             bundle.info, retriever_info, [dataset_protocol("nq", examples, "nq", None)])
"""
from searchr1.eval.manifest import build_manifest, compare_manifests, dataset_protocol, index_protocol, load_manifest
from searchr1.eval.methods import METHODS, get_method
from searchr1.eval.runner import EvalConfig, evaluate, read_predictions
from searchr1.eval.types import EvalContext, Prediction

__all__ = ["EvalConfig", "EvalContext", "METHODS", "Prediction", "build_manifest", "compare_manifests",
           "dataset_protocol", "evaluate", "get_method", "index_protocol", "load_manifest", "read_predictions"]
