"""Batched BM25 top-k over a term-major (CSC) score matrix.

The index stores one precomputed score per (term, passage) posting:
``data[indptr[t]:indptr[t+1]]`` are the scores of term ``t`` in passages
``indices[indptr[t]:indptr[t+1]]``. A query's score for a passage is the sum over
its query terms (duplicates counted, as in rank_bm25 and bm25s).

Only passages sharing at least one term with the query (positive score) are hits, so
a query may return fewer than ``k`` hits and an empty query returns none. Ties are
broken by corpus index (lower first), which makes results reproducible and makes the
top-k of a larger ``k`` start with the top-k of a smaller one.

Two implementations with identical results: a numba kernel (GIL-free, run on query
chunks in threads; each chunk reuses one score buffer, touches only the postings of
its queries and skips frequent terms' postings when a MaxScore bound allows) and an
exhaustive numpy one used when numba is not installed (and as the test oracle).
"""
from __future__ import annotations

import numpy as np

try:
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # the numpy path below needs nothing else
    HAVE_NUMBA = False


def topk_numpy(q_ptr, q_ids, data, indices, indptr, n_docs: int, k: int):
    """Reference implementation. q_ptr: (Q+1,) offsets into q_ids (term ids).

    Returns (idx, scores): (Q, k) int64 (``-1`` where fewer than k hits) and float32.
    """
    nq = len(q_ptr) - 1
    out_idx = np.full((nq, k), -1, dtype=np.int64)
    out_sc = np.zeros((nq, k), dtype=np.float32)
    for qi in range(nq):
        scores = np.zeros(n_docs, dtype=np.float32)
        for t in q_ids[q_ptr[qi]:q_ptr[qi + 1]]:
            s, e = indptr[t], indptr[t + 1]
            np.add.at(scores, indices[s:e], data[s:e])
        cand = np.flatnonzero(scores > 0)
        order = np.lexsort((cand, -scores[cand]))[:k]
        out_idx[qi, : len(order)] = cand[order]
        out_sc[qi, : len(order)] = scores[cand[order]]
    return out_idx, out_sc


def term_max_scores(data, indptr) -> np.ndarray:
    """(V,) largest posting score per term (0 for a term without postings)."""
    out = np.zeros(len(indptr) - 1, dtype=np.float32)
    nonempty = np.flatnonzero(np.diff(indptr) > 0)
    if len(nonempty):
        out[nonempty] = np.maximum.reduceat(data, indptr[nonempty])
    return out


def postings_sorted(indices, indptr) -> bool:
    """True when every term's posting list is sorted by passage index (required by the cut)."""
    if len(indices) < 2:
        return True
    inc = np.diff(indices) > 0
    inc[indptr[1:-1][(indptr[1:-1] > 0) & (indptr[1:-1] < len(indices))] - 1] = True  # list boundaries
    return bool(inc.all())


SLACK = 1e-4  # relative + absolute margin on score bounds (float32 sums drift by ~1e-7 per term)

if HAVE_NUMBA:

    @njit(cache=True, nogil=True)
    def _kth_score(touched, n, scores, k):
        """k-th largest of scores[touched[:n]] (0.0 when fewer than k). O(n·k), k is small."""
        if n < k:
            return 0.0
        best = np.zeros(k, dtype=np.float32)  # ascending; best[0] is the current k-th
        for c in range(n):
            s = scores[touched[c]]
            if s > best[0]:
                pos = 0
                while pos + 1 < k and best[pos + 1] < s:
                    best[pos] = best[pos + 1]
                    pos += 1
                best[pos] = s
        return best[0]

    @njit(cache=True, nogil=True)
    def _posting_score(indices, data, start, end, d):
        """Score of passage d in one sorted posting list (binary search), 0.0 if absent."""
        lo, hi = start, end
        while lo < hi:
            mid = (lo + hi) >> 1
            if indices[mid] < d:
                lo = mid + 1
            else:
                hi = mid
        if lo < end and indices[lo] == d:
            return data[lo]
        return np.float32(0.0)  # keep the return type float32 (bit-identical sums)

    @njit(cache=True, nogil=True)
    def _topk_chunk(q_ptr, q_ids, data, indices, indptr, term_max, k, lo, hi,
                    scores, touched, cand, cand_sc, out_idx, out_sc):
        """Queries lo..hi. ``scores`` (N,) must be all zero on entry and is left all zero."""
        for qi in range(lo, hi):
            terms = q_ids[q_ptr[qi]:q_ptr[qi + 1]]
            nt = len(terms)
            # 1) Term-at-a-time with a MaxScore cut: shortest posting lists first; once
            # the remaining terms' largest scores together cannot lift an unseen passage
            # to the current k-th score, they only update passages already seen (step 3).
            # Bounds carry a slack (SLACK) so float32 rounding can never drop a true hit.
            order = np.argsort(indptr[terms + 1] - indptr[terms], kind="mergesort")
            rest = np.zeros(nt + 1, dtype=np.float64)  # rest[j] = sum of term_max of order[j:]
            for j in range(nt - 1, -1, -1):
                rest[j] = rest[j + 1] + term_max[terms[order[j]]]
            n_touched = 0
            j = 0
            while j < nt:
                # the k-th score is at most what the processed terms can give (rest[0] - rest[j]):
                # only look it up when a cut is possible at all
                if j > 0 and rest[j] * (1 + SLACK) + SLACK < rest[0] - rest[j]:
                    if rest[j] * (1 + SLACK) + SLACK < _kth_score(touched, n_touched, scores, k):
                        break
                t = terms[order[j]]
                for p in range(indptr[t], indptr[t + 1]):
                    v = data[p]
                    if v > 0:  # zero postings (idf 0) add nothing; skipping them keeps scores[d] > 0 <=> touched
                        d = indices[p]
                        if scores[d] == 0:
                            touched[n_touched] = d
                            n_touched += 1
                        scores[d] += v
                j += 1
            theta = _kth_score(touched, n_touched, scores, k)
            bound = rest[j] * (1 + SLACK) + SLACK if j < nt else 0.0
            # 2) Candidates: passages that can still reach the top k (a generous band below theta).
            n_cand = 0
            for c in range(n_touched):
                d = touched[c]
                if scores[d] + bound >= theta - SLACK * (1.0 + theta):
                    cand[n_cand] = d
                    n_cand += 1
                scores[d] = 0.0  # leave the buffer clean for the next query
            # 3) Exact scores of the candidates, summed in query-term order: bit-identical
            # to scoring every passage (topk_numpy), whatever order step 1 used.
            for c in range(n_cand):
                d = cand[c]
                sc = np.float32(0.0)
                for jj in range(nt):
                    t = terms[jj]
                    sc = np.float32(sc + _posting_score(indices, data, indptr[t], indptr[t + 1], d))
                cand_sc[c] = sc
            # 4) Top k by (score desc, passage index asc).
            m = 0
            for c in range(n_cand):
                d = cand[c]
                sc = cand_sc[c]
                if sc <= 0.0:
                    continue
                if m == k and (sc < out_sc[qi, k - 1] or (sc == out_sc[qi, k - 1] and d > out_idx[qi, k - 1])):
                    continue
                pos = m if m < k else k - 1
                while pos > 0 and (out_sc[qi, pos - 1] < sc or (out_sc[qi, pos - 1] == sc and out_idx[qi, pos - 1] > d)):
                    if pos < k:
                        out_sc[qi, pos] = out_sc[qi, pos - 1]
                        out_idx[qi, pos] = out_idx[qi, pos - 1]
                    pos -= 1
                out_sc[qi, pos] = sc
                out_idx[qi, pos] = d
                if m < k:
                    m += 1


def topk_numba(q_ptr, q_ids, data, indices, indptr, n_docs: int, k: int, term_max=None, pool=None,
               n_threads: int = 1):
    """Same contract as :func:`topk_numpy`, with a MaxScore cut (exact).

    term_max: (V,) float32, the largest posting score of each term (:func:`term_max_scores`);
    posting lists must be sorted by passage index. With a thread ``pool`` and
    ``n_threads`` > 1, query chunks run concurrently (the kernel releases the GIL).
    """
    if term_max is None:
        term_max = term_max_scores(data, indptr)
    nq = len(q_ptr) - 1
    out_idx = np.full((nq, k), -1, dtype=np.int64)
    out_sc = np.zeros((nq, k), dtype=np.float32)
    if nq == 0:
        return out_idx, out_sc
    lens = indptr[q_ids + 1] - indptr[q_ids]
    cum = np.concatenate([[0], np.cumsum(lens)])
    per_query = cum[q_ptr[1:]] - cum[q_ptr[:-1]]  # postings touched per query, (Q,)
    max_postings = int(min(per_query.max(initial=0), n_docs)) + 1

    def run(lo: int, hi: int) -> None:
        scores = np.zeros(n_docs, dtype=np.float32)
        touched = np.empty(max_postings, dtype=np.int32)
        cand = np.empty(max_postings, dtype=np.int32)
        cand_sc = np.empty(max_postings, dtype=np.float32)
        _topk_chunk(q_ptr, q_ids, data, indices, indptr, term_max, k, lo, hi, scores, touched, cand, cand_sc,
                    out_idx, out_sc)

    if pool is None or n_threads <= 1 or nq < 64:
        run(0, nq)
    else:
        per = -(-nq // n_threads)
        list(pool.map(lambda lo: run(lo, min(nq, lo + per)), range(0, nq, per)))
    return out_idx, out_sc
