"""Dense retrieval on Qdrant: the same encoder as :mod:`searchr1.search.dense`, vectors in a Qdrant collection.

For an index larger than one machine: Qdrant shards and replicates a collection across a
cluster; searchr1 only encodes queries and maps points back to passages.

* Location (``QdrantConfig.url``): ``http(s)://host:port`` is a Qdrant server (API key from
  ``$QDRANT_API_KEY``); any other value is a directory for qdrant-client's embedded local mode
  (one process at a time, exact search: tests and small corpora); ``:memory:`` is in-process and
  cannot be reopened, so an index directory cannot point at it.
* Points: id = corpus position, vector = the L2-normalised passage embedding, payload =
  ``{"id", "title", "text"}``; distance ``Dot`` (= cosine on unit vectors, the scores of
  FAISS ``flat``). Hits are read from the payloads, so a server in front of a remote
  collection does not need the passages locally.
* Ties (equal scores) are ordered by corpus position, as everywhere in searchr1.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from searchr1.search.base import Document, Hit, config_from_json
from searchr1.search.dense import DenseConfig, Encoder

API_KEY_ENV = "QDRANT_API_KEY"
CONFIG_FILE = "qdrant.json"


@dataclass
class QdrantConfig:
    url: str = ":memory:"
    """``http(s)://host:port`` (a Qdrant server), a directory (embedded local mode) or ``:memory:``."""
    collection: str = "searchr1"
    """Collection name; building replaces a collection of that name."""
    dense: DenseConfig = field(default_factory=DenseConfig)
    """Encoder settings (encoder, prefix, pooling, batch size, device); the FAISS fields are unused."""
    hnsw_ef: int | None = None
    """Qdrant server search breadth per query; None = the collection's default."""
    upsert_batch: int = 256
    """Points per upsert request."""

    def __post_init__(self):
        if isinstance(self.dense, dict):  # from qdrant.json
            self.dense = DenseConfig(**self.dense)
        if not self.url.strip() or not self.collection.strip():
            raise ValueError("QdrantConfig needs a url (http://host:6333 or a directory) and a collection name.")
        if self.upsert_batch < 1 or self.hnsw_ef is not None and self.hnsw_ef < 1:
            raise ValueError("QdrantConfig needs upsert_batch >= 1 and hnsw_ef >= 1 (or None).")

    @property
    def is_server(self) -> bool:
        return self.url.startswith(("http://", "https://"))


def connect(config: QdrantConfig):
    """A ``QdrantClient`` for ``config.url`` (a clear error when the extra is missing)."""
    try:
        from qdrant_client import QdrantClient
    except ImportError:
        raise ImportError("the qdrant retriever needs qdrant-client: `pip install 'searchr1[qdrant]'`.") from None
    if config.url == ":memory:":
        return QdrantClient(location=":memory:")
    if config.is_server:
        return QdrantClient(url=config.url, api_key=os.environ.get(API_KEY_ENV) or None)
    try:
        return QdrantClient(path=config.url)
    except RuntimeError as e:  # the local store is locked by another client
        raise ValueError(f"qdrant local store {config.url}: {e}; close the other process using it "
                         "or run a Qdrant server (--qdrant-url http://host:6333).") from None


class QdrantRetriever:
    """``search(queries, topk)`` over a Qdrant collection of passage embeddings."""

    kind = "qdrant"

    def __init__(self, client, encoder: Encoder, config: QdrantConfig, size: int | None = None):
        self.client, self.encoder, self.config = client, encoder, config
        self._size = size

    @classmethod
    def build(cls, docs: Iterable[Document], config: QdrantConfig, *, encoder: Encoder | None = None,
              client=None, show_progress: bool = False, chunk: int = 4096) -> "QdrantRetriever":
        """Encode ``docs`` in chunks (streamed) into a new collection (an existing one is replaced)."""
        from qdrant_client import models

        encoder = encoder or Encoder(config.dense)
        client = client or connect(config)
        if client.collection_exists(config.collection):
            client.delete_collection(config.collection)
        client.create_collection(config.collection, vectors_config=models.VectorParams(
            size=encoder.dim, distance=models.Distance.DOT))
        n = 0
        buf: list[Document] = []
        for doc in docs:
            buf.append(doc)
            if len(buf) >= chunk:
                n = cls._upload(client, encoder, config, buf, n, show_progress)
                buf = []
        if buf:
            n = cls._upload(client, encoder, config, buf, n, show_progress)
        if n == 0:
            raise ValueError("cannot build a Qdrant collection over an empty corpus; check the corpus file.")
        return cls(client, encoder, config, size=n)

    @staticmethod
    def _upload(client, encoder: Encoder, config: QdrantConfig, docs: list[Document], start: int,
                show_progress: bool) -> int:
        from qdrant_client import models

        vectors = encoder.encode_passages(docs, show_progress)
        points = [models.PointStruct(id=start + i, vector=v.tolist(),
                                     payload={"id": d.id, "title": d.title, "text": d.text})
                  for i, (d, v) in enumerate(zip(docs, vectors))]
        for s in range(0, len(points), config.upsert_batch):
            client.upsert(config.collection, points=points[s:s + config.upsert_batch], wait=True)
        return start + len(docs)

    def save_files(self, index_dir: str | Path) -> None:
        """``qdrant.json``: where the collection lives and how queries are encoded."""
        if self.config.url == ":memory:":
            raise ValueError("an in-memory Qdrant collection cannot be saved; build with --qdrant-url "
                             "http://host:6333 or a directory.")
        (Path(index_dir) / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, index_dir: str | Path, encoder: Encoder | None = None) -> "QdrantRetriever":
        index_dir = Path(index_dir)
        if not (index_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{index_dir}: not a Qdrant index (no {CONFIG_FILE}); build one with "
                                    "`searchr1 index --retriever qdrant --qdrant-url URL`.")
        config = config_from_json(QdrantConfig, index_dir / CONFIG_FILE)
        client = connect(config)
        if not client.collection_exists(config.collection):
            raise FileNotFoundError(f"Qdrant at {config.url} has no collection {config.collection!r}; rebuild it "
                                    "with `searchr1 index --retriever qdrant`.")
        return cls(client, encoder or Encoder(config.dense), config)

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        from qdrant_client import models

        if topk < 1:
            raise ValueError(f"topk={topk}: ask for at least 1 passage.")
        if not queries:
            return []
        vectors = self.encoder.encode_queries(list(queries))
        params = models.SearchParams(hnsw_ef=self.config.hnsw_ef) if self.config.hnsw_ef else None
        requests = [models.QueryRequest(query=v.tolist(), limit=topk, with_payload=True, params=params)
                    for v in vectors]
        out = []
        for response in self.client.query_batch_points(self.config.collection, requests=requests):
            points = sorted(response.points, key=lambda p: (-p.score, int(p.id)))
            out.append([Hit(Document(str(p.payload["id"]), p.payload["title"], p.payload["text"]), float(p.score))
                        for p in points])
        return out

    def __len__(self) -> int:
        if self._size is None:
            self._size = int(self.client.count(self.config.collection, exact=True).count)
        return self._size

    def close(self) -> None:
        self.client.close()

    def describe(self) -> dict:
        return {"kind": self.kind, **asdict(self.config), "resolved_prefix": self.config.dense.resolved_prefix(),
                "pooling_used": self.encoder.pooling, "dim": self.encoder.dim}
