"""Writes a synthetic LDA corpus for pipemode-lda's throughput benchmark (docs/algorithms.md,
"## LDA", "### Throughput"): documents drawn from random topics as sparse RecordIO-protobuf word
counts, which pipemode-gen cannot make (its sparse values are uniform in [-1, 1), not counts
from topics).

Usage: /usr/bin/python3 lda_bench_data.py --out DIR [--documents N] [--vocabulary V] [--topics K]
           [--words L] [--alpha A] [--files F] [--seed S]
Writes DIR/part-00000.rec, ... and DIR/test.rec (1,000 more documents), and prints what it wrote.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

import numpy as np  # noqa: E402

import recordio_protobuf as rp  # noqa: E402


def write_documents(f, n, topics, alpha, words, rng, batch=2000):
    """Writes `n` documents of `words` words each (token by token: a topic from the document's
    Dirichlet mixture, then a word from that topic), `batch` documents at a time."""
    k, v = topics.shape
    cdf = np.cumsum(topics, axis=1)
    cdf[:, -1] = 1.0
    written = 0
    while written < n:
        b = min(batch, n - written)
        theta = rng.dirichlet(np.full(k, alpha), size=b)
        doc = np.repeat(np.arange(b), words)
        z = (rng.random(b * words)[:, None] > np.cumsum(theta, axis=1)[doc]).sum(1).clip(0, k - 1)
        u = rng.random(b * words)
        w = np.empty(b * words, dtype=np.int64)
        for t in range(k):
            m = z == t
            w[m] = np.searchsorted(cdf[t], u[m], side="right").clip(0, v - 1)
        keys, counts = np.unique(doc * v + w, return_counts=True)
        starts = np.searchsorted(keys // v, np.arange(b + 1))
        for d in range(b):
            s, e = starts[d], starts[d + 1]
            f.write(rp.frame(rp.encode_record(counts[s:e].astype(float), keys=keys[s:e] % v, dim=v)))
        written += b


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--documents", type=int, default=200000)
    p.add_argument("--vocabulary", type=int, default=10000)
    p.add_argument("--topics", type=int, default=20)
    p.add_argument("--words", type=int, default=100)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--files", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    topics = rng.dirichlet(np.full(a.vocabulary, 0.05), size=a.topics)
    os.makedirs(a.out, exist_ok=True)
    start = time.monotonic()
    bounds = np.linspace(0, a.documents, a.files + 1).astype(int)
    for i in range(a.files):
        with open(os.path.join(a.out, "part-%05d.rec" % i), "wb") as f:
            write_documents(f, bounds[i + 1] - bounds[i], topics, a.alpha, a.words, rng)
    with open(os.path.join(a.out, "test.rec"), "wb") as f:
        write_documents(f, 1000, topics, a.alpha, a.words, rng)
    size = sum(os.path.getsize(os.path.join(a.out, n)) for n in os.listdir(a.out) if n.startswith("part-"))
    print("%d documents, %d words each, vocabulary %d, %d topics: %d files, %.1f MB in %.1f s"
          % (a.documents, a.words, a.vocabulary, a.topics, a.files, size / 1e6, time.monotonic() - start))


if __name__ == "__main__":
    main()
