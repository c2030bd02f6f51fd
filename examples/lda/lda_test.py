"""Reference checks of pipemode-lda (run by CTest; see examples/common/training_example.cmake).

Writes word-count documents as sparse RecordIO-protobuf (examples/common/recordio_protobuf.py),
runs the program on the files and checks:
- the moments it accumulated (--moments_file) equal NumPy's computation from the same documents
  to 1e-10: M1, M2 (dense) or M2 times the test matrix and times the basis (randomized range
  finder), and the whitened third moment T for the program's own whitening W; on a small corpus
  whose documents have 0 to 20 words, so that the estimators' length cuts are crossed; the same
  documents as dense records give the same moments;
- on the bars topics (25 words on a 5x5 grid, 5 row bars and 5 column bars, 10,000 documents of
  50-100 words, alpha 0.1 each), the recovered topics are within a mean L1 distance of 0.1 of the
  true ones after scipy.optimize.linear_sum_assignment's matching; the bars are not uniform along
  their length, since uniform ones are linearly dependent (the 5 rows and the 5 columns both sum
  to the uniform distribution), which no moment method that whitens to num_topics dimensions can
  resolve;
- test:pwll equals NumPy's inference of the test documents with the program's model, and
  --predict writes NumPy's topic mixtures;
- trained on the same 2,500 documents as scikit-learn's LatentDirichletAllocation (from
  --python-path; batch variational EM, 10 iterations) and scored by the same inference, the
  program's held-out pwll is within 3 % of scikit-learn's;
- --pipe-mode reads a train FIFO a pass and test_0, and gives the files' model.json and
  metrics.json;
- with --mpirun, 3 ranks accumulate the moments of 1 rank to 1e-12 (randomized range finder, the
  test matrix from the shared seed) and give the same topics.

Usage: /usr/bin/python3 lda_test.py --program PROGRAM --work DIR [--python-path DIR] [--mpirun MPIRUN]
Exit status 0 when every check passes, 1 otherwise, 77 (CTest's skip) without NumPy.
"""

import argparse
import json
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
last_stdout = [""]


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def run(cmd):
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if p.returncode != 0:
        print("command failed (%d): %s\n%s%s" % (p.returncode, " ".join(cmd), p.stdout, p.stderr))
        failures.append(" ".join(cmd))
        return None
    last_stdout[0] = p.stdout
    return seconds


def load_json(path):
    with open(path) as f:
        return json.load(f)


def printed_metrics(stdout):
    out = {}
    for line in stdout.splitlines():
        if line.startswith("#metric "):
            key, value = line[len("#metric "):].split()[0].split("=", 1)
            out[key] = float(value)
    return out


# --- data -------------------------------------------------------------------------------------

def bars(uniform=False):
    """10 topics over a 5x5 grid: topic r < 5 is row r, topic 5 + c column c. Not uniform: the
    weights along a bar are a rotation of (0.32, 0.26, 0.2, 0.14, 0.08), reversed for columns."""
    b = np.zeros((10, 25))
    w = np.array([0.32, 0.26, 0.2, 0.14, 0.08])
    for r in range(5):
        g = np.zeros((5, 5))
        g[r, :] = 0.2 if uniform else np.roll(w, r)
        b[r] = g.ravel()
    for c in range(5):
        g = np.zeros((5, 5))
        g[:, c] = 0.2 if uniform else np.roll(w[::-1], c)
        b[5 + c] = g.ravel()
    return b


def documents(topics, alpha, lengths, rng):
    theta = rng.dirichlet(alpha, size=len(lengths))
    return np.array([rng.multinomial(n, t @ topics) if n > 0 else np.zeros(topics.shape[1])
                     for n, t in zip(lengths, theta)], dtype=float)


# --- the moments in NumPy ---------------------------------------------------------------------

def moments(x, alpha0):
    """M1, E2 = E[x1 x2^T] (averaged over documents of >= 2 words) and M2."""
    n = x.sum(1)
    d1, d2 = n >= 1, n >= 2
    m1 = (x[d1] / n[d1, None]).mean(0)
    x2, n2 = x[d2], n[d2]
    e2 = (x2 / (n2 * (n2 - 1))[:, None]).T @ x2 - np.diag((x2 / (n2 * (n2 - 1))[:, None]).sum(0))
    e2 /= d2.sum()
    return m1, e2, e2 - alpha0 / (alpha0 + 1) * np.outer(m1, m1)


def whitened_third_moment(x, w, m1, alpha0):
    """T = M3(W, W, W) from the unbiased estimators of E[x1 x2^T] and E[x1 x2 x3] for counts."""
    n = x.sum(1)
    d2, d3 = n >= 2, n >= 3
    y = x @ w
    k = w.shape[1]
    e2w = np.zeros((k, k))
    e3w = np.zeros((k, k, k))
    for c, length, yy in zip(x[d2], n[d2], y[d2]):
        a = (w.T * c) @ w
        e2w += (np.outer(yy, yy) - a) / (length * (length - 1))
        if length < 3:
            continue
        t = (np.einsum("a,b,c->abc", yy, yy, yy) - np.einsum("ab,c->abc", a, yy) - np.einsum("ac,b->abc", a, yy)
             - np.einsum("bc,a->abc", a, yy) + 2 * np.einsum("i,ia,ib,ic->abc", c, w, w, w))
        e3w += t / (length * (length - 1) * (length - 2))
    e2w /= d2.sum()
    e3w /= d3.sum()
    m = w.T @ m1
    return (e3w - alpha0 / (alpha0 + 2) * (np.einsum("ab,c->abc", e2w, m) + np.einsum("ac,b->abc", e2w, m)
                                           + np.einsum("bc,a->abc", e2w, m))
            + 2 * alpha0 ** 2 / ((alpha0 + 1) * (alpha0 + 2)) * np.einsum("a,b,c->abc", m, m, m))


def relative_error(got, expected):
    got, expected = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
    return np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-300)


# --- the inference in NumPy -------------------------------------------------------------------

def digamma(x):
    """psi(x), x > 0, as lda.hpp computes it: the recurrence up to 12, then the series."""
    x = np.array(x, dtype=float)
    r = np.zeros_like(x)
    while True:
        low = x < 12
        if not low.any():
            break
        r[low] -= 1 / x[low]
        x[low] += 1
    f = 1 / (x * x)
    return r + np.log(x) - 0.5 / x - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f * (
        1 / 132 - f * (691 / 32760))))))


EPS = np.finfo(float).eps


def infer(x, alpha, beta, max_iterations=200, tol=1e-6):
    """Each document's topic mixture with the topics fixed (docs/algorithms.md, "## LDA"): the
    documents iterate in lockstep, each stopping by its own test as the program's do."""
    n, k = x.shape[0], beta.shape[0]
    gamma = np.ones((n, k))
    active = np.ones(n, dtype=bool)
    for _ in range(max_iterations):
        if not active.any():
            break
        g = gamma[active]
        e = np.exp(digamma(g) - digamma(g.sum(1))[:, None])
        norm = e @ beta + EPS
        nxt = alpha + e * ((x[active] / norm) @ beta.T)
        change = np.abs(nxt - g).mean(1)
        gamma[active] = nxt
        idx = np.nonzero(active)[0]
        active[idx[change < tol]] = False
    return gamma / gamma.sum(1, keepdims=True)


def pwll(x, alpha, beta):
    theta = infer(x, alpha, beta)
    p = np.maximum(theta @ beta, EPS)
    mask = x > 0
    return (x[mask] * np.log(p[mask])).sum() / x.sum()


def matched_l1(found, truth, lsa):
    cost = np.abs(found[:, None, :] - truth[None, :, :]).sum(2)
    r, c = lsa(cost)
    return cost[r, c].mean(), cost[r, c].max()


def import_scipy(args, what):
    if args.python_path:
        sys.path.insert(0, args.python_path)
    try:
        from scipy.optimize import linear_sum_assignment
        return linear_sum_assignment
    except ImportError as e:
        print("skipped: %s needs SciPy, not in %s (%s); scripts/lib/deps.sh's pipemode_fetch_python_reference"
              " puts it there" % (what, args.python_path, e))
        return None


# --- the checks -------------------------------------------------------------------------------

def check_moments(args, work):
    rng = np.random.default_rng(16)
    v, k, alpha0 = 30, 4, 0.8
    topics = rng.dirichlet(np.full(v, 0.3), size=k)
    x = documents(topics, np.full(k, alpha0 / k), rng.integers(0, 21, size=400), rng)
    path = os.path.join(work, "moments.rec")
    rp.write_sparse(path, x)
    m1, e2, m2 = moments(x, alpha0)
    for layout, extra in (("dense", []), ("randomized", ["--dense_limit", "0", "--oversampling", "3"])):
        out = os.path.join(work, "moments_" + layout)
        dump = os.path.join(out, "moments.json")
        if run([args.program, "--quiet", "--num_topics", str(k), "--alpha0", str(alpha0), "--model-dir", out,
                "--moments_file", dump] + extra + [path]) is None:
            continue
        got = load_json(dump)
        n = x.sum(1)
        check(got["documents"] == [int((n >= 1).sum()), int((n >= 2).sum()), int((n >= 3).sum())],
              "%s: documents counted for M1, M2 and M3 (%s)" % (layout, got["documents"]))
        err = {"M1": relative_error(got["m1"], m1)}
        if layout == "dense":
            err["M2"] = relative_error(got["m2"], m2)
        else:
            test = np.array(got["test_matrix"])
            basis = np.array(got["basis"])
            err["M2 X"] = relative_error(got["m2_test"], m2 @ test)
            err["M2 Q"] = relative_error(got["m2_basis"], m2 @ basis)
            check(test.shape == (v, k + 3), "%s: the test matrix is V x (k + oversampling) %s" % (layout, test.shape))
        w = np.array(got["whitening"])
        err["T"] = relative_error(np.array(got["t"]), whitened_third_moment(x, w, m1, alpha0).ravel())
        worst = max(err.values())
        check(worst < 1e-10, "%s: the accumulated moments equal NumPy's (%s)"
              % (layout, ", ".join("%s %.1e" % kv for kv in err.items())))
        # W whitens M2 on its top-k subspace
        check(relative_error(w.T @ m2 @ w, np.eye(k)) < 1e-8, "%s: W^T M2 W = I" % layout)
    # the same documents as dense records (one count a vocabulary word) give the same moments
    dense_path = os.path.join(work, "moments_dense_records.rec")
    rp.write_dense(dense_path, x)
    out = os.path.join(work, "moments_dense_records")
    if run([args.program, "--quiet", "--num_topics", str(k), "--alpha0", str(alpha0), "--model-dir", out,
            "--moments_file", os.path.join(out, "moments.json"), dense_path]) is not None:
        a = load_json(os.path.join(out, "moments.json"))
        b = load_json(os.path.join(work, "moments_dense", "moments.json"))
        check(all(a[name] == b[name] for name in ("documents", "m1", "m2", "t")),
              "dense records: the same moments as sparse ones")


def check_pipe_mode(args, work):
    """--pipe-mode as SageMaker lays it out: a train FIFO a pass (4 for the randomized range
    finder: M1 and M2 X, two M2 Q, T), then test_0: the same model.json and metrics.json as from
    files, and every FIFO read."""
    path = os.path.join(work, "moments.rec")
    opts = ["--quiet", "--num_topics", "4", "--alpha0", "0.8", "--dense_limit", "0"]
    files_dir = os.path.join(work, "pipe_files")
    if run([args.program] + opts + ["--model-dir", files_dir, "--test", path, path]) is None:
        return
    root = os.path.join(work, "pipe_sagemaker")
    os.makedirs(os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "config"))
    with open(os.path.join(root, "config", "inputdataconfig.json"), "w") as f:
        json.dump({c: {"TrainingInputMode": "Pipe"} for c in ("train", "test")}, f)
    fifos = [("train_%d" % e, path) for e in range(4)] + [("test_0", path)]
    for name, _ in fifos:
        os.mkfifo(os.path.join(root, "data", name))
    # One writer a FIFO, so that the order the program opens them in does not matter; a FIFO the
    # program never opens keeps its writer waiting, which the timeout below catches.
    feeder = subprocess.Popen([sys.executable, "-c", """
import json, shutil, sys, threading
def feed(name, path):
    with open(sys.argv[1] + '/' + name, 'wb') as f, open(path, 'rb') as src:
        shutil.copyfileobj(src, f)
threads = [threading.Thread(target=feed, args=p) for p in json.loads(sys.argv[2])]
for t in threads:
    t.start()
for t in threads:
    t.join()
""", os.path.join(root, "data"), json.dumps(fifos)])
    pipe_dir = os.path.join(work, "pipe_model")
    ok = run([args.program] + opts + ["--model-dir", pipe_dir, "--pipe-mode", "--data-dir",
                                      os.path.join(root, "data")]) is not None
    try:
        feeder.wait(timeout=10)
        all_read = True
    except subprocess.TimeoutExpired:
        feeder.kill()
        feeder.wait()
        all_read = False
    check(all_read, "--pipe-mode: every FIFO (train_0 to train_3, test_0) was read")
    if ok:
        same = all(open(os.path.join(pipe_dir, n)).read() == open(os.path.join(files_dir, n)).read()
                   for n in ("model.json", "metrics.json"))
        check(same, "--pipe-mode: the same model.json and metrics.json as from files")


def write_bars(work, rng, train_docs, test_docs, parts):
    truth = bars()
    alpha = np.full(10, 0.1)
    x = documents(truth, alpha, rng.integers(50, 101, size=train_docs), rng)
    test = documents(truth, alpha, rng.integers(50, 101, size=test_docs), rng)
    paths = rp.write_parts(os.path.join(work, "bars"), x, parts, sparse=True)
    test_path = os.path.join(work, "bars_test.rec")
    rp.write_sparse(test_path, test)
    return truth, x, test, paths, test_path


def model_arrays(model):
    return np.array(model["alpha"]), np.array(model["beta"])


def check_bars(args, work):
    rng = np.random.default_rng(160)
    truth, x, test, paths, test_path = write_bars(work, rng, 10000, 1000, 4)
    out = os.path.join(work, "bars_model")
    t = run([args.program, "--quiet", "--num_topics", "10", "--alpha0", "1", "--mini_batch_size", "500",
             "--model-dir", out, "--test", test_path] + paths)
    if t is None:
        return
    model = load_json(os.path.join(out, "model.json"))
    metrics = load_json(os.path.join(out, "metrics.json"))
    printed = printed_metrics(last_stdout[0])
    alpha, beta = model_arrays(model)
    check(beta.shape == (10, 25) and np.allclose(beta.sum(1), 1) and (beta >= 0).all(),
          "model.json: beta is 10 x 25, each row a distribution")
    check(abs(alpha.sum() - 1) < 0.1, "the recovered alpha sum to alpha0 = 1 within 0.1 (%.4f; %s)"
          % (alpha.sum(), np.array2string(alpha, precision=3)))
    lsa = import_scipy(args, "the bars topics' matching")
    if lsa is not None:
        mean, worst = matched_l1(beta, truth, lsa)
        check(mean < 0.1, "bars: mean L1 distance to the true topics %.4f < 0.1 (largest %.4f), 10,000 documents, "
              "%.2f s" % (mean, worst, t))
    ours = pwll(test, alpha, beta)
    check("test:pwll" in printed and printed["test:pwll"] == metrics.get("test:pwll"),
          "test:pwll printed and in metrics.json (%s)" % printed.get("test:pwll"))
    check(abs(metrics["test:pwll"] - ours) < 1e-9 * abs(ours),
          "test:pwll %.12f equals NumPy's inference %.12f" % (metrics["test:pwll"], ours))

    predictions = os.path.join(work, "predictions.jsonl")
    if run([args.program, "--quiet", "--predict", os.path.join(out, "model.json"), "--output", predictions,
            test_path]) is not None:
        with open(predictions) as f:
            rows = [json.loads(line)["topic_mixture"] for line in f]
        theta = infer(test, alpha, beta)
        check(len(rows) == len(test) and np.abs(np.array(rows) - theta).max() < 1e-9,
              "--predict: %d topic mixtures equal NumPy's to 1e-9" % len(rows))

    if args.python_path:
        sys.path.insert(0, args.python_path)
    try:
        from sklearn.decomposition import LatentDirichletAllocation
    except ImportError as e:
        print("skipped: the comparison with scikit-learn needs it in %s (%s); scripts/lib/deps.sh's "
              "pipemode_fetch_python_reference puts it there" % (args.python_path, e))
        return
    # scikit-learn's variational EM costs about 3 ms of CPU a document and iteration here, so the
    # comparison is on the first part's 2,500 documents, on which the program is trained again.
    part = x[:2500]
    small = os.path.join(work, "bars_part_model")
    if run([args.program, "--quiet", "--num_topics", "10", "--alpha0", "1", "--model-dir", small, "--test", test_path,
            paths[0]]) is None:
        return
    part_model = load_json(os.path.join(small, "model.json"))
    ours_part = load_json(os.path.join(small, "metrics.json"))["test:pwll"]
    check(part_model["documents"] == len(part), "the first part holds %d documents" % part_model["documents"])
    start = time.monotonic()
    sk = LatentDirichletAllocation(n_components=10, doc_topic_prior=0.1, learning_method="batch", max_iter=10,
                                   random_state=0).fit(part)
    sk_beta = sk.components_ / sk.components_.sum(1, keepdims=True)
    sk_pwll = pwll(test, np.full(10, 0.1), sk_beta)
    seconds = time.monotonic() - start
    rel = (sk_pwll - ours_part) / abs(sk_pwll)
    sk_l1 = matched_l1(sk_beta, truth, lsa)[0] if lsa is not None else float("nan")
    ours_l1 = matched_l1(np.array(part_model["beta"]), truth, lsa)[0] if lsa is not None else float("nan")
    check(abs(rel) < 0.03, "held-out pwll %.5f, trained on 2,500 documents, within 3 %% of scikit-learn's "
          "LatentDirichletAllocation's %.5f on the same documents (%+.2f %%; topics' mean L1 %.4f against its "
          "%.4f; scikit-learn %.1f s)" % (ours_part, sk_pwll, -100 * rel, ours_l1, sk_l1, seconds))


def check_mpi(args, work):
    rng = np.random.default_rng(161)
    truth, x, test, paths, test_path = write_bars(work, rng, 6000, 10, 6)
    opts = ["--quiet", "--num_topics", "10", "--alpha0", "1", "--mini_batch_size", "300", "--dense_limit", "0"]
    mpirun = [args.mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "3"]
    got = {}
    for ranks, cmd in ((1, []), (3, mpirun)):
        out = os.path.join(work, "ranks_%d" % ranks)
        dump = os.path.join(out, "moments.json")
        t = run(cmd + [args.program] + opts + ["--model-dir", out, "--moments_file", dump] + paths)
        if t is None:
            return
        got[ranks] = (load_json(dump), load_json(os.path.join(out, "model.json")), t)
        check(" ranks: %d\n" % ranks in last_stdout[0], "the program ran as %d rank(s)" % ranks)
    one, three = got[1][0], got[3][0]
    check(got[3][1]["documents"] == len(x) and three["documents"] == one["documents"],
          "3 ranks: every document summed once (%d)" % got[3][1]["documents"])
    err = {name: relative_error(three[name], one[name]) for name in ("m1", "m2_test", "m2_basis", "t")}
    check(three["test_matrix"] == one["test_matrix"], "3 ranks: the same test matrix as 1 rank (the shared seed)")
    check(max(err.values()) < 1e-12, "3 ranks: the moments of 1 rank to 1e-12 (%s)"
          % ", ".join("%s %.1e" % kv for kv in err.items()))
    b1, b3 = np.array(got[1][1]["beta"]), np.array(got[3][1]["beta"])
    check(np.abs(b1 - b3).max() < 1e-8, "3 ranks: the same topics as 1 rank (max difference %.1e; %.1f s and %.1f s)"
          % (np.abs(b1 - b3).max(), got[1][2], got[3][2]))
    lsa = import_scipy(args, "the bars topics' matching")
    if lsa is not None:
        mean, worst = matched_l1(b3, truth, lsa)
        check(mean < 0.1, "3 ranks, randomized range finder: bars' mean L1 %.4f < 0.1 from 6,000 documents" % mean)


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
        check_mpi(args, args.work)
    else:
        check_moments(args, args.work)
        check_pipe_mode(args, args.work)
        check_bars(args, args.work)
    print("%d failure(s) in %.1f s" % (len(failures), time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
