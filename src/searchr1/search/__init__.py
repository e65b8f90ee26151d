"""searchr1.search — corpora, retrievers, the retrieval server and its clients.

Modules (import what you need; heavy dependencies load lazily):

* ``base``        Document, Hit, SearchError, SearchAuthError, the Retriever protocol
* ``corpus``      iter_corpus / load_corpus / write_corpus_jsonl / write_corpus_parquet, CorpusError
* ``corpus_build``build_wiki_corpus, iter_wiki_passages, synthetic_corpus
* ``bm25``        BM25Config, BM25Retriever (bm25s + PyStemmer, numba kernel)
* ``dense``       DenseConfig, LoadOptions, Encoder, DenseRetriever (HF encoder + FAISS)
* ``faiss_index`` FAISS factory strings, streaming training, nprobe/efSearch, mmap, GPU sharding
* ``qdrant``      QdrantConfig, QdrantRetriever (the same encoder + a Qdrant collection)
* ``shards``      ShardedRetriever: global top-k over several /retrieve servers on corpus shards
* ``index``       IndexConfig, build_index, load_retriever, read_index_meta
* ``server``      ServerConfig, create_app, serve, BackgroundServer
* ``client``      HTTPSearchClient, InProcessClient, CachedRetriever
* ``guard``       GuardedRetriever (failure policy), RetrievalOutage, startup_check
* ``documents``   build_corpus: a folder of txt/md/html/pdf files as a corpus
* ``web``         WebConfig, WebSearchRetriever: Serper, SerpAPI, Brave, SearxNG behind the Retriever protocol
* ``cache``       SearchCacheConfig, CachedSearch: persistent SQLite cache, modes off/rw/record/replay
* ``rerank``      RerankConfig, CrossEncoderReranker: cross-encoder stage over a retriever's top-n
"""
from searchr1.search.base import Document, Hit, Retriever, SearchAuthError, SearchError

__all__ = ["Document", "Hit", "Retriever", "SearchAuthError", "SearchError"]
