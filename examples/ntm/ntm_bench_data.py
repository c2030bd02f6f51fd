"""Writes a synthetic bag-of-words data set for pipemode-ntm's throughput measurement:
documents drawn from random topics (each a Dirichlet(0.05) distribution over the vocabulary,
documents a Dirichlet(0.1) mix of them), as sparse float32 RecordIO-protobuf word counts in
DIR/part-00000.rec, ... (examples/common/recordio_protobuf.py). pipemode-gen cannot make these:
its values are uniform in [-1, 1), not counts.

Usage: /usr/bin/python3 ntm_bench_data.py --out DIR [--docs N] [--vocabulary V] [--topics K]
                                          [--length L] [--files F] [--seed S]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import recordio_protobuf as rp  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--docs", type=int, default=100000)
    ap.add_argument("--vocabulary", type=int, default=2000)
    ap.add_argument("--topics", type=int, default=50)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    topics = rng.dirichlet(np.full(args.vocabulary, 0.05), size=args.topics)
    per_file = -(-args.docs // args.files)
    os.makedirs(args.out, exist_ok=True)
    written = 0
    for f in range(args.files):
        n = min(per_file, args.docs - written)
        theta = rng.dirichlet(np.full(args.topics, 0.1), size=n)
        counts = np.array([rng.multinomial(args.length, p / p.sum()) for p in theta @ topics], dtype=np.float32)
        rp.write_sparse(os.path.join(args.out, "part-%05d.rec" % f), counts)
        written += n
    print("documents: %d, vocabulary: %d, files: %d" % (written, args.vocabulary, args.files))


if __name__ == "__main__":
    main()
