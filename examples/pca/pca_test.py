"""Reference checks of pipemode-pca against NumPy (run by CTest; see
examples/common/training_example.cmake).

Writes small data sets with a planted covariance spectrum (dense and sparse float32 records),
runs pipemode-pca on them and compares model.json with np.linalg.eigh of the covariance of the
same float32 values: explained variances within 1e-4 relative, components within 1e-3 up to
sign, the mean within 1e-9. Also: subtract_mean=false, the randomized mode, a hyperparameters
file, a Pipe-mode FIFO, prediction mode (--predict: every record's projection, in order, is
NumPy's from the model file's mean and components, 1e-12 relative), and (with --mpirun)
`mpirun -np 3` against the single process.

Usage: /usr/bin/python3 pca_test.py --program PIPEMODE_PCA --work DIR [--mpirun MPIRUN]
Exit status 0 when every check passes, 1 otherwise, 77 (CTest's skip) without NumPy.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
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
    return ok


def run(cmd, **kwargs):
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    seconds = time.monotonic() - start
    if p.returncode != 0:
        print("command failed (%d): %s\n%s%s" % (p.returncode, " ".join(cmd), p.stdout, p.stderr))
        failures.append(" ".join(cmd))
        return None
    last_stdout[0] = p.stdout
    return seconds


def load_model(directory):
    with open(os.path.join(directory, "model.json")) as f:
        return json.load(f)


# --- data ----------------------------------------------------------------------------------


def planted_dense(n, d, rank, seed):
    """Rows mean + Z diag(sigma) Q with well separated sigma, plus small isotropic noise."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    sigma = 6.0 * 0.75 ** np.arange(rank)
    x = rng.normal(size=(n, rank)) * sigma @ q[:, :rank].T
    x += 0.05 * rng.normal(size=(n, d))
    x += rng.uniform(-3, 3, size=d)  # a mean away from 0
    return x.astype(np.float32)


def planted_sparse(n, d, density, seed):
    """Sparse rows: each column present with probability `density`, with a column-dependent
    scale and offset, and a correlated pair of columns, so that the covariance has distinct
    eigenvalues."""
    rng = np.random.default_rng(seed)
    scale = 1.0 + 0.15 * np.arange(d)
    x = (rng.normal(size=(n, d)) * scale + 0.5 * np.arange(d) / d).astype(np.float64)
    x[:, 1] += 0.8 * x[:, 0]
    mask = rng.uniform(size=(n, d)) < density
    x = np.where(mask, x, 0.0)
    return x.astype(np.float32)


# --- reference ------------------------------------------------------------------------------


def reference(x, k, subtract_mean=True):
    x = x.astype(np.float64)
    n = x.shape[0]
    mean = x.mean(axis=0)
    y = x - mean if subtract_mean else x
    w, v = np.linalg.eigh(y.T @ y)
    order = np.argsort(w)[::-1][:k]
    return {"mean": mean, "explained_variance": w[order] / (n - 1), "components": v[:, order].T,
            "ratio": w[order] / np.trace(y.T @ y)}


def compare(model, ref, what, ev_tol=1e-4, comp_tol=1e-3):
    ev = np.array(model["explained_variance"])
    comps = np.array(model["components"])
    k = len(ref["explained_variance"])
    check(ev.shape == (k,) and comps.shape == ref["components"].shape,
          "%s: %d components of dimension %d" % (what, k, ref["components"].shape[1]))
    if ev.shape != (k,) or comps.shape != ref["components"].shape:
        return
    rel = np.max(np.abs(ev - ref["explained_variance"]) / ref["explained_variance"])
    check(rel <= ev_tol, "%s: explained variance within %g relative (max %.2e)" % (what, ev_tol, rel))
    # Up to sign: align each component with the reference's.
    signs = np.sign(np.sum(comps * ref["components"], axis=1))
    err = np.max(np.abs(comps * signs[:, None] - ref["components"]))
    check(err <= comp_tol, "%s: components within %g up to sign (max %.2e)" % (what, comp_tol, err))
    mean_err = np.max(np.abs(np.array(model["mean"]) - ref["mean"]))
    check(mean_err <= 1e-9 * max(1.0, np.max(np.abs(ref["mean"]))), "%s: mean (max error %.2e)" % (what, mean_err))
    ratio_err = np.max(np.abs(np.array(model["explained_variance_ratio"]) - ref["ratio"]) / ref["ratio"])
    check(ratio_err <= ev_tol, "%s: explained variance ratio within %g relative (max %.2e)" % (what, ev_tol, ratio_err))
    return rel, err


def same_model(a, b, what, tol=1e-9):
    ev_a, ev_b = np.array(a["explained_variance"]), np.array(b["explained_variance"])
    c_a, c_b = np.array(a["components"]), np.array(b["components"])
    rel = np.max(np.abs(ev_a - ev_b) / np.abs(ev_b))
    signs = np.sign(np.sum(c_a * c_b, axis=1))
    err = np.max(np.abs(c_a * signs[:, None] - c_b))
    check(a["records"] == b["records"] and rel <= tol and err <= 1e-7,
          "%s: same records (%d), variances (max rel %.1e) and components (max %.1e)"
          % (what, a["records"], rel, err))


# --- main -----------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--mpirun")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    prog = args.program
    w = lambda *p: os.path.join(args.work, *p)  # noqa: E731

    dense = planted_dense(3000, 24, 8, seed=1)
    sparse = planted_sparse(2500, 40, 0.25, seed=2)
    dense_files = rp.write_parts(w("dense"), dense, 5)
    sparse_files = rp.write_parts(w("sparse"), sparse, 4, sparse=True)
    k = 5
    common = ["--quiet", "--mini_batch_size", "256"]

    if args.mpirun:
        # Under MPI: each of 3 ranks reads its own files; the result equals one process's.
        mpirun = [args.mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "3"]
        for name, files in (("dense", dense_files), ("sparse", sparse_files)):
            for mode in ("regular", "randomized"):
                single, multi = w(name + "_" + mode + "_1"), w(name + "_" + mode + "_3")
                opts = common + ["--num_components", str(k), "--algorithm_mode", mode]
                t1 = run([prog] + opts + ["--model-dir", single] + files)
                t3 = run(mpirun + [prog] + opts + ["--model-dir", multi] + files)
                if t1 is None or t3 is None:
                    continue
                check("ranks: 3" in last_stdout[0], "%s %s: the program ran as 3 MPI ranks" % (name, mode))
                print("      %s %s: 1 process %.2f s, 3 ranks %.2f s" % (name, mode, t1, t3))
                same_model(load_model(multi), load_model(single), "%s %s, 3 ranks vs 1" % (name, mode))
        return

    cases = [
        ("dense regular", dense, dense_files, ["--algorithm_mode", "regular"], True, 1e-4, 1e-3),
        ("dense regular, subtract_mean=false", dense, dense_files, ["--subtract_mean", "false"], False, 1e-4, 1e-3),
        # The randomized mode approximates: with a sketch of l = 5 + 19 = d columns it is exact.
        ("dense randomized, full sketch", dense, dense_files,
         ["--algorithm-mode", "randomized", "--extra-components", "19"], True, 1e-4, 1e-3),
        # With SageMaker's default extra_components (max(10, k) = 10: l = 15 of 24 columns) its
        # error is that of the Nystrom approximation, set by the noise outside the rank-8 signal.
        ("dense randomized, default 15-column sketch", dense, dense_files,
         ["--algorithm-mode", "randomized"], True, 2e-3, 2e-2),
        ("sparse regular", sparse, sparse_files, ["--feature_dim", "40"], True, 1e-4, 1e-3),
        ("sparse regular, subtract_mean=false", sparse, sparse_files, ["--subtract_mean=False"], False, 1e-4, 1e-3),
        # A flat spectrum is the randomized mode's hard case: compare with what a sketch of
        # num_components + extra_components = 5 + 35 = 40 = d columns gives, which is exact.
        ("sparse randomized, full sketch", sparse, sparse_files,
         ["--algorithm_mode", "randomized", "--extra_components", "35"], True, 1e-4, 1e-3),
    ]
    for i, (what, x, files, opts, centred, ev_tol, comp_tol) in enumerate(cases):
        out = w("model_%d" % i)
        seconds = run([prog] + common + ["--num_components", str(k), "--model-dir", out] + opts + files)
        if seconds is None:
            continue
        model = load_model(out)
        check(model["records"] == x.shape[0], "%s: %d records" % (what, x.shape[0]))
        result = compare(model, reference(x, k, centred), what, ev_tol, comp_tol)
        if result:
            print("      %s: %.2f s, variance rel err %.1e, component err %.1e" % (what, seconds, *result))

    # Prediction mode: each record's projection, in order, is NumPy's (x - mean) @ components.T
    # with the model file's mean and components (x @ components.T without centring).
    for i, x, files, what in ((0, dense, dense_files, "dense"), (1, dense, dense_files, "dense, subtract_mean=false"),
                              (4, sparse, sparse_files, "sparse")):
        out = w("model_%d" % i)
        if not os.path.exists(os.path.join(out, "model.json")):
            continue
        predictions = w("predictions_%d.jsonl" % i)
        cmd = [prog, "--quiet", "--predict", os.path.join(out, "model.json")]
        if i != 4:
            cmd += ["--output", predictions]
        if run(cmd + files) is None:
            continue
        text = last_stdout[0] if i == 4 else open(predictions).read()
        rows = [json.loads(line) for line in text.splitlines()]
        model = load_model(out)
        centred = model["subtract_mean"]
        x64 = x.astype(np.float64) - (np.array(model["mean"]) if centred else 0)
        ref = x64 @ np.array(model["components"]).T
        if not check(len(rows) == x.shape[0], "predict %s: one projection a record (%d)" % (what, len(rows))):
            continue
        got = np.array([r["projection"] for r in rows])
        err = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
        check(got.shape == ref.shape and err <= 1e-12,
              "predict %s: projections are NumPy's, in record order (max rel. error %.1e)" % (what, err))
    with open(os.path.join(w("model_0"), "metrics.json")) as f:
        check(json.load(f) == {}, "metrics.json is written, empty (SageMaker's PCA has no metrics)")

    # The randomized sketch with the default extra_components (max(10, k) = 10, so 15 of 40
    # columns) on the sparse data's flat spectrum: say how close it gets, check it is close.
    out = w("model_sketch")
    if run([prog] + common + ["--num_components", str(k), "--algorithm_mode", "randomized", "--model-dir", out]
           + sparse_files) is not None:
        ref = reference(sparse, k)
        ev = np.array(load_model(out)["explained_variance"])
        rel = np.max(np.abs(ev - ref["explained_variance"]) / ref["explained_variance"])
        check(rel < 0.25, "sparse randomized, 15-column sketch of a flat spectrum: variances within 25%% (max %.3f)"
              % rel)

    # SageMaker's hyperparameters.json (every value a string) gives the same model.
    hp = w("hyperparameters.json")
    with open(hp, "w") as f:
        json.dump({"num_components": str(k), "feature_dim": "24", "mini_batch_size": "100",
                   "algorithm_mode": "regular", "subtract_mean": "true", "sagemaker_program": "x"}, f)
    out = w("model_hp")
    if run([prog, "--quiet", "--hyperparameters", hp, "--model-dir", out] + dense_files) is not None:
        compare(load_model(out), reference(dense, k), "hyperparameters.json")

    # Pipe mode: the channel's FIFO for epoch 0, fed by a writer as SageMaker's agent would.
    channel_dir = w("channels")
    os.makedirs(channel_dir)
    fifo = os.path.join(channel_dir, "train_0")
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            for path in dense_files:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, f)

    writer = threading.Thread(target=feed)
    writer.start()
    out = w("model_pipe")
    ok = run([prog] + common + ["--num_components", str(k), "--pipe-channel", "train", "--data-dir", channel_dir,
                                "--model-dir", out])
    writer.join()
    if ok is not None:
        compare(load_model(out), reference(dense, k), "Pipe-mode FIFO")

    # Usage errors exit with 2 and say what is wrong.
    p = subprocess.run([prog, "--model-dir", w("x"), dense_files[0]], capture_output=True, text=True)
    check(p.returncode == 2 and "num_components is required" in p.stderr, "no num_components: usage error")
    p = subprocess.run([prog, "--num_components", "30", "--model-dir", w("x"), dense_files[0]],
                       capture_output=True, text=True)
    check(p.returncode == 2 and "feature_dim" in p.stderr, "num_components > feature_dim: usage error")
    p = subprocess.run([prog, "--num_components", "3", "--feature_dim", "25", "--model-dir", w("x"), dense_files[0]],
                       capture_output=True, text=True)
    check(p.returncode == 1 and "not feature_dim = 25" in p.stderr, "wrong feature_dim: data error")
    p = subprocess.run([prog, "--num_components", "3", "--feature_dim", "20000", "--model-dir", w("x"),
                        sparse_files[0]], capture_output=True, text=True)
    check(p.returncode == 2 and "use algorithm_mode randomized" in p.stderr,
          "regular mode above feature_dim 16384: usage error pointing to randomized")


if __name__ == "__main__":
    main()
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all checks passed")
