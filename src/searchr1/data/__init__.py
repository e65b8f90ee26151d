"""searchr1.data — QA data sets (FlashRAG JSONL, Search-R1 parquet, HF datasets dirs),
prompt templates, and the synthetic SearchWorld (``searchr1.data.world``).

    from searchr1.data import load_qa, make_prompt
    examples = load_qa("nq", split="test")          # or a path
    prompt = make_prompt(examples[0].question)      # Search-R1's template
"""
from searchr1.data.load import load_qa
from searchr1.data.prompts import apply_chat_template, make_prompt, render_passages, template_hash
from searchr1.data.qa import DataError, DataNotFoundError, QAExample

__all__ = ["DataError", "DataNotFoundError", "QAExample", "apply_chat_template", "load_qa",
           "make_prompt", "render_passages", "template_hash"]
