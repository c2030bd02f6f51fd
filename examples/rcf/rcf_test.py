"""Reference checks of pipemode-rcf (run by CTest; see examples/common/training_example.cmake).

Writes small data sets as RecordIO-protobuf (float32 records, dense and once sparse, by
examples/common/recordio_protobuf.py) for the train channel and as CSV (label first, as
SageMaker's text/csv;label_size=1) for the test channel, runs the program on them and checks:
- exactness: a re-implementation in Python of the documented model (splitmix64 draws, the cut
  rule, AWS's depth-based score) rebuilds, from the samples and the seed in model.json, the
  very trees the program wrote (every dimension, cut and mass equal) and the very scores
  --predict gives (equal as doubles), on points seen and unseen, duplicates included, and on
  shingles of a series; sparse records give the dense records' model;
- anomalies: on Gaussian clusters with scattered outliers, and on a periodic series with spikes
  (shingled), the ROC AUC of the program's scores is at least scikit-learn's IsolationForest's
  minus 0.02 (skipped, with a message, without scikit-learn from --python-path); the printed
  test:f1, precision, recall and accuracy equal the ones recomputed from the scores with the
  mean + 3 sd threshold, and metrics.json holds them;
- uniform reservoirs: with the record index as a feature, over 100 trees of 30 from 3000 records
  in three files of 500, 1000 and 1500, every tree holds 30 distinct records and the inclusion
  counts pass chi-square tests at the 0.001 level, by blocks of 100 records (29 degrees of
  freedom) and by file (2 degrees of freedom);
- with --mpirun: the same under 3 ranks, each reading one of the unequal files (a merge that took
  the same number from each rank fails the by-file test by far), and the trees and scores of the
  merged sample still equal the Python rebuild.

Usage: /usr/bin/python3 rcf_test.py --program PROGRAM --work DIR [--python-path DIR] [--mpirun MPIRUN]
Exit status 0 when every check passes, 1 otherwise, 77 (CTest's skip) without NumPy.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))

try:
    import numpy as np
except ImportError:
    print("skipped: NumPy is not installed for %s (Debian: python3-numpy)" % sys.executable)
    sys.exit(77)

import recordio_protobuf as rp  # noqa: E402

failures = []


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print("command failed (%d): %s\n%s%s" % (p.returncode, " ".join(cmd), p.stdout, p.stderr))
        failures.append(" ".join(cmd))
        return None
    return p.stdout


def printed_metrics(stdout):
    """The `#metric <channel>:<name>=<value>` lines, as a SageMaker metric definition's regex
    (`#metric test:f1=([^\\s]+)`) picks them up."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("#metric "):
            key, value = line[len("#metric "):].split()[0].split("=", 1)
            out[key] = float(value)
    return out


def write_csv(path, x, labels):
    """The test channel: the label, then the features, as float32 values print."""
    with open(path, "w") as f:
        for row, y in zip(x.astype(np.float32), labels):
            f.write(",".join([str(int(y))] + [repr(float(v)) for v in row]) + "\n")


def train(args, work, name, files, hyper, test_csv=None, mpi=None):
    """Runs the program; returns (model, metrics.json, printed metrics) or None."""
    model_dir = os.path.join(work, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    cmd = [args.program, "--quiet", "--model-dir", model_dir]
    for k, v in hyper.items():
        cmd += ["--" + k, str(v)]
    if test_csv:
        cmd += ["--test", test_csv, "--test-content-type", "text/csv;label_size=1"]
    cmd += list(files)
    if mpi:
        cmd = [args.mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(mpi)] + cmd
    out = run(cmd)
    if out is None:
        return None
    with open(os.path.join(model_dir, "model.json")) as f:
        model = json.load(f)
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    return model, metrics, printed_metrics(out), out


def predict(args, work, model, files):
    """--predict's scores (None for a record without a whole shingle)."""
    out = os.path.join(work, "predictions.jsonl")
    if run([args.program, "--quiet", "--predict", model, "--output", out] + list(files)) is None:
        return None
    with open(out) as f:
        return [json.loads(line)["score"] for line in f]


# --- the model in Python, from docs/algorithms.md --------------------------------------------

M64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & M64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53


class Tree:
    """A random cut tree over `points` (a list of tuples of floats), cuts from SplitMix64(seed).
    nodes: [dim, cut, mass, right, leaf point, lo, hi] in preorder."""

    def __init__(self, points, seed):
        self.points = points
        self.dim = len(points[0]) if points else 0
        self.nodes = []
        self.rng = SplitMix64(seed)
        if points:
            self.build(list(range(len(points))))

    def build(self, idx):
        at = len(self.nodes)
        pts = [self.points[i] for i in idx]
        lo = [min(p[j] for p in pts) for j in range(self.dim)]
        hi = [max(p[j] for p in pts) for j in range(self.dim)]
        node = [-1, 0.0, len(idx), 0, idx[0], lo, hi]
        self.nodes.append(node)
        total = 0.0
        for j in range(self.dim):
            total += hi[j] - lo[j]
        if len(idx) == 1 or not total > 0:
            return at
        u1 = self.rng.uniform()
        u2 = self.rng.uniform()
        r = u1 * total
        dim = None
        acc = 0.0
        for j in range(self.dim):
            acc += hi[j] - lo[j]
            if r < acc:
                dim = j
                break
        if dim is None:
            dim = max(j for j in range(self.dim) if hi[j] > lo[j])
        cut = lo[dim] + u2 * (hi[dim] - lo[dim])
        if cut >= hi[dim]:
            cut = math.nextafter(hi[dim], lo[dim])
        node[0], node[1] = dim, cut
        self.build([i for i in idx if self.points[i][dim] <= cut])
        node[3] = self.build([i for i in idx if self.points[i][dim] > cut])
        return at

    def separation(self, x, node):
        lo, hi = node[5], node[6]
        gap = span = 0.0
        for j in range(self.dim):
            span += max(hi[j], x[j]) - min(lo[j], x[j])
            if x[j] < lo[j]:
                gap += lo[j] - x[j]
            elif x[j] > hi[j]:
                gap += x[j] - hi[j]
        return gap / span if span > 0 else 0.0

    def score(self, x):
        if not self.nodes:
            return 0.0
        path = []
        i = 0
        while self.nodes[i][0] >= 0:
            path.append(i)
            node = self.nodes[i]
            i = i + 1 if x[node[0]] <= node[1] else node[3]
        leaf = self.nodes[i]
        depth = float(len(path))
        total = float(len(self.points))
        if tuple(x) == self.points[leaf[4]]:
            m = float(leaf[2])
            s = (1.0 - m / (2.0 * total)) / (depth + math.log2(m + 1.0))
        else:
            s = 1.0 / (depth + 1.0)
        for level in range(len(path) - 1, -1, -1):
            prob = self.separation(x, self.nodes[path[level]])
            if prob == 0.0:
                break
            s = prob * (1.0 / (level + 1.0)) + (1.0 - prob) * s
        return s * math.log2(total + 1.0)


def forest_from_model(model):
    """The trees rebuilt from model.json's samples and seed, as the program's documentation says."""
    d = model["point_dim"]
    g = SplitMix64(model["seed"])
    seeds = [g.next() for _ in range(model["num_trees"])]
    trees, at = [], 0
    for t, n in enumerate(model["sample_sizes"]):
        pts = [tuple(float(v) for v in row) for row in model["samples"][at:at + int(n)]]
        assert all(len(p) == d for p in pts)
        trees.append(Tree(pts, seeds[t]))
        at += int(n)
    return trees


def forest_score(trees, x):
    s = 0.0
    for t in trees:
        s += t.score(x)
    return s / len(trees)


def shingles(series, size):
    """Rows of `size` consecutive values of a 1-D series (the first at index size - 1)."""
    return np.stack([series[i:i + size] for i in range(len(series) - size + 1)])


def three_sigma_f1(scores, labels):
    """The program's test metrics from its scores: threshold mean + 3 population sd, summed in
    order as the program sums."""
    mean = 0.0
    for s in scores:
        mean += s
    mean /= len(scores)
    var = 0.0
    for s in scores:
        var += (s - mean) * (s - mean)
    var /= len(scores)
    threshold = mean + 3.0 * math.sqrt(var)
    pred = [s > threshold for s in scores]
    tp = sum(1 for p, y in zip(pred, labels) if p and y)
    fp = sum(1 for p, y in zip(pred, labels) if p and not y)
    fn = sum(1 for p, y in zip(pred, labels) if not p and y)
    tn = len(pred) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fn + fp) if tp else 0.0
    return {"test:f1": f1, "test:precision": precision, "test:recall": recall,
            "test:accuracy": (tp + tn) / len(pred)}


def auc(scores, labels):
    """ROC AUC as the Mann-Whitney statistic (ties at their average rank)."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels) > 0.5
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    pos = labels.sum()
    neg = len(labels) - pos
    return (ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg)


# --- checks -----------------------------------------------------------------------------------

def check_model_trees(name, model, trees):
    """model.json's "trees" rows against the Python rebuild: every node's tree, dimension, cut
    and mass equal."""
    rows = [[t, float(n[0]), float(n[1]) if n[0] >= 0 else 0.0, float(n[2])]
            for t, tree in enumerate(trees) for n in tree.nodes]
    written = [[float(v) for v in row] for row in model["trees"]]
    check(rows == written, "%s: the %d nodes of the %d trees equal the Python rebuild (dimension, cut and mass)"
          % (name, len(rows), len(trees)))


def check_scores(name, trees, points, scores):
    ref = [forest_score(trees, tuple(float(v) for v in p)) for p in points]
    same = sum(1 for a, b in zip(ref, scores) if a == b)
    worst = max(abs(a - b) for a, b in zip(ref, scores)) if ref else 0.0
    check(len(ref) == len(scores) and same == len(ref),
          "%s: %d of %d --predict scores equal the Python re-implementation exactly (max diff %.1e)"
          % (name, same, len(ref), worst))


def check_exact(args, work):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, (300, 3)), rng.normal(5, 0.5, (200, 3)),
                        rng.uniform(-10, 10, (20, 3)), np.tile([[1.5, -2.0, 0.25]], (10, 1))]).astype(np.float32)
    rng.shuffle(x)
    path = os.path.join(work, "exact.rec")
    rp.write_dense(path, x)
    r = train(args, work, "exact", [path], {"num_trees": 20, "num_samples_per_tree": 64, "seed": 7})
    if r is None:
        return
    model = r[0]
    check(model["records"] == len(x) and model["sample_sizes"] == [64] * 20,
          "exact: 20 trees of 64 samples from %d records" % len(x))
    rows = {tuple(row) for row in x.astype(float).tolist()}
    check(all(tuple(s) in rows for s in model["samples"]), "exact: every sampled point is a record of the data")
    trees = forest_from_model(model)
    check_model_trees("exact", model, trees)
    # The same records as sparse ones (the feature_rows densify path): the same model.
    spath = os.path.join(work, "exact-sparse.rec")
    rp.write_sparse(spath, x)
    rs = train(args, work, "exact-sparse", [spath], {"num_trees": 20, "num_samples_per_tree": 64, "seed": 7})
    if rs is not None:
        check(all(rs[0][key] == model[key] for key in ("samples", "trees", "records")),
              "exact: the records written sparse give the same samples and trees as dense")
    # Seen points (the data, duplicates included) and unseen ones (a grid beyond the data).
    queries = np.concatenate([x, rng.uniform(-12, 12, (100, 3)).astype(np.float32)])
    qpath = os.path.join(work, "exact-queries.rec")
    rp.write_dense(qpath, queries)
    scores = predict(args, work, os.path.join(work, "exact", "model.json"), [qpath])
    if scores is not None:
        check_scores("exact", trees, queries.astype(float), scores)


def sklearn_isolation_forest(args):
    try:
        sys.path.insert(0, args.python_path)
        from sklearn.ensemble import IsolationForest
        return IsolationForest
    except ImportError as e:
        print("skipped: scikit-learn is not in %s (%s); scripts/lib/deps.sh's pipemode_fetch_python_reference"
              " puts it there: the IsolationForest comparisons are not made" % (args.python_path, e))
        return None


def check_test_metrics(name, r, scores, labels):
    _, metrics_json, printed, _ = r
    mine = three_sigma_f1(scores, labels)
    worst = max(abs(printed.get(k, float("nan")) - v) for k, v in mine.items())
    check(worst < 1e-12, "%s: printed test:f1 %.4f, precision %.4f, recall %.4f, accuracy %.4f equal the ones "
          "recomputed from --predict's scores with the mean + 3 sd threshold (max diff %.1e)"
          % (name, mine["test:f1"], mine["test:precision"], mine["test:recall"], mine["test:accuracy"], worst))
    check(all(metrics_json.get(k) == printed.get(k) for k in mine), "%s: metrics.json holds the printed metrics" % name)


def check_clusters(args, work, IsolationForest):
    rng = np.random.default_rng(2)

    def draw(n, outliers):
        centres = np.array([[0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, -3]], dtype=float)
        x = centres[rng.integers(0, 3, n)] + rng.normal(0, 1, (n, 4))
        out = rng.uniform(-12, 18, (outliers, 4))
        data = np.concatenate([x, out]).astype(np.float32)
        labels = np.concatenate([np.zeros(n), np.ones(outliers)])
        order = rng.permutation(len(data))
        return data[order], labels[order]

    x, _ = draw(4000, 80)
    tx, ty = draw(1500, 30)
    path = os.path.join(work, "clusters.rec")
    rp.write_dense(path, x)
    csv = os.path.join(work, "clusters-test.csv")
    write_csv(csv, tx, ty)
    tpath = os.path.join(work, "clusters-test.rec")
    rp.write_dense(tpath, tx)
    r = train(args, work, "clusters", [path], {"num_trees": 100, "num_samples_per_tree": 256}, test_csv=csv)
    if r is None:
        return
    scores = predict(args, work, os.path.join(work, "clusters", "model.json"), [tpath])
    if scores is None:
        return
    check_test_metrics("clusters", r, scores, ty)
    a = auc(scores, ty)
    if IsolationForest is None:
        print("info: clusters: ROC AUC %.4f (no IsolationForest to compare with)" % a)
        return
    iso = IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(x)
    b = auc(-iso.score_samples(tx), ty)
    check(a >= b - 0.02, "clusters (4 dimensions, 2 %% outliers): ROC AUC %.4f >= IsolationForest's %.4f - 0.02; "
          "test:f1 %.4f" % (a, b, r[2].get("test:f1", float("nan"))))


def check_series(args, work, IsolationForest):
    rng = np.random.default_rng(3)
    size = 10

    def draw(n, spikes):
        t = np.arange(n)
        series = np.sin(2 * np.pi * t / 48) + 0.5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.05, n)
        labels = np.zeros(n)
        at = rng.choice(np.arange(100, n, 40), spikes, replace=False)
        series[at] += rng.choice([-1, 1], spikes) * rng.uniform(1.0, 2.0, spikes)
        labels[at] = 1
        return series.astype(np.float32), labels

    series, _ = draw(4000, 20)
    test_series, test_labels = draw(2000, 12)
    path = os.path.join(work, "series.rec")
    rp.write_dense(path, series.reshape(-1, 1))
    csv = os.path.join(work, "series-test.csv")
    write_csv(csv, test_series.reshape(-1, 1), test_labels)
    tpath = os.path.join(work, "series-test.rec")
    rp.write_dense(tpath, test_series.reshape(-1, 1))
    hyper = {"num_trees": 50, "num_samples_per_tree": 256, "shingle_size": size, "seed": 5}
    r = train(args, work, "series", [path], hyper, test_csv=csv)
    if r is None:
        return
    model = r[0]
    check(model["point_dim"] == size and model["records"] == len(series) - size + 1,
          "series: %d shingles of %d values from %d records" % (model["records"], size, len(series)))
    scores = predict(args, work, os.path.join(work, "series", "model.json"), [tpath])
    if scores is None:
        return
    check(scores[:size - 1] == [None] * (size - 1) and all(s is not None for s in scores[size - 1:]),
          "series: --predict gives null for the first %d records (no whole shingle), a score after" % (size - 1))
    windows = shingles(test_series, size)
    labels = shingles(test_labels, size).max(axis=1)  # a shingle holding a spike is anomalous
    scores = scores[size - 1:]
    check_test_metrics("series", r, scores, labels)
    # Exactness on shingles too, on every 20th (the Python scorer is slow).
    trees = forest_from_model(model)
    check_model_trees("series", model, trees)
    check_scores("series", trees, windows[::20].astype(float), scores[::20])
    a = auc(scores, labels)
    if IsolationForest is None:
        print("info: series: ROC AUC %.4f (no IsolationForest to compare with)" % a)
        return
    iso = IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(shingles(series, size))
    b = auc(-iso.score_samples(windows), labels)
    check(a >= b - 0.02, "series (shingles of %d, spikes): ROC AUC %.4f >= IsolationForest's %.4f - 0.02; "
          "test:f1 %.4f" % (size, a, b, r[2].get("test:f1", float("nan"))))


def check_uniform(args, work, mpi=None):
    """Reservoirs of the record index: each tree 30 distinct records; chi-square by blocks of
    100 records and by file."""
    name = "uniform" + (" (%d ranks)" % mpi if mpi else "")
    sizes = [500, 1000, 1500]
    n = sum(sizes)
    rng = np.random.default_rng(4)
    x = np.stack([np.arange(n), rng.normal(0, 1, n)], axis=1).astype(np.float32)
    files, at = [], 0
    for i, s in enumerate(sizes):
        files.append(os.path.join(work, "uniform-%d.rec" % i))
        rp.write_dense(files[-1], x[at:at + s])
        at += s
    trees, k = 100, 30
    r = train(args, work, "uniform-mpi" if mpi else "uniform", files,
              {"num_trees": trees, "num_samples_per_tree": k, "seed": 11}, mpi=mpi)
    if r is None:
        return
    model = r[0]
    if mpi:
        check("ranks: %d" % mpi in r[3], "%s: the program ran as %d ranks" % (name, mpi))
    ids = np.array([row[0] for row in model["samples"]], dtype=int).reshape(trees, k)
    check(model["records"] == n and all(len(set(row)) == k for row in ids.tolist()),
          "%s: %d records; each of %d trees holds %d distinct records" % (name, model["records"], trees, k))
    counts = np.bincount(ids.ravel(), minlength=n)
    blocks = counts.reshape(-1, 100).sum(axis=1)
    expected = trees * k / n * 100
    chi_blocks = float(((blocks - expected) ** 2 / expected).sum())
    by_file = np.array([counts[:500].sum(), counts[500:1500].sum(), counts[1500:].sum()])
    exp_file = np.array(sizes) * trees * k / n
    chi_file = float(((by_file - exp_file) ** 2 / exp_file).sum())
    # Critical values of chi-square at p = 0.001: 58.30 (29 degrees of freedom), 13.82 (2).
    check(chi_blocks < 58.30, "%s: inclusions by blocks of 100 records: chi-square %.1f < 58.30 (df 29, p = 0.001)"
          % (name, chi_blocks))
    check(chi_file < 13.82, "%s: inclusions by file (%s, expected %s): chi-square %.2f < 13.82 (df 2, p = 0.001)"
          % (name, by_file.tolist(), exp_file.astype(int).tolist(), chi_file))
    rebuilt = forest_from_model(model)
    check_model_trees(name, model, rebuilt)
    scores = predict(args, work, os.path.join(work, "uniform-mpi" if mpi else "uniform", "model.json"), files[:1])
    if scores is not None:
        check_scores(name, rebuilt, x[:500:5].astype(float), scores[::5])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--program", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--python-path", default="")
    parser.add_argument("--mpirun")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    start = time.monotonic()
    if args.mpirun:
        check_uniform(args, args.work, mpi=3)
    else:
        check_exact(args, args.work)
        check_uniform(args, args.work)
        IsolationForest = sklearn_isolation_forest(args)
        check_clusters(args, args.work, IsolationForest)
        check_series(args, args.work, IsolationForest)
    print("%d failure(s) in %.1f s" % (len(failures), time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
