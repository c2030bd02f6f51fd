"""Reference checks of pipemode-kmeans against NumPy (run by CTest; see
examples/common/training_example.cmake).

Writes small data sets with known, well separated clusters (dense and sparse float32 records,
the cluster id as the label), runs pipemode-kmeans on them and checks that:
- it recovers the clusters (assignment purity >= 0.99 with the model's centres);
- its within-cluster sum of squares is the one NumPy computes for its centres (1e-6 relative);
- that sum is within 2% of NumPy's Lloyd's algorithm started from the program's initial centres
  (model.json's "initial_centers");
- with extra_center_factor 2 and kmeans++ it still recovers the clusters;
- metrics.json and the "#metric" lines: train:msd and train:ssd are the final pass's, test:ssd
  and test:msd of a --test channel are NumPy's for the model's centres (1e-9 relative), also
  with --pipe-mode reading train_N and test_0 FIFOs as SageMaker lays them out;
- prediction mode (--predict) gives every record, in order, the closest centre and the
  Euclidean distance to it that NumPy computes (1e-9), dense and sparse, to --output or stdout;
- with --mpirun, 3 MPI ranks reach the same result as one process (same WCSS within 1e-3
  relative and the same centres up to order within 1e-2; their initial centres differ, since
  each rank samples the start of its own shard), their test metrics are NumPy's for their
  centres (the test channel is read whole, not sharded), and prediction under mpirun writes
  the single process's rows once.

Usage: /usr/bin/python3 kmeans_test.py --program PIPEMODE_KMEANS --work DIR [--mpirun MPIRUN]
Exit status 0 when every check passes, 1 otherwise, 77 (CTest's skip) without NumPy.
"""

import argparse
import json
import os
import re
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


def load_model(directory):
    with open(os.path.join(directory, "model.json")) as f:
        return json.load(f)


# --- data ----------------------------------------------------------------------------------


def clustered_dense(n, d, k, seed):
    """n rows around k centres drawn uniformly in a box of side 20, noise 0.5; rows shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(k, d))
    labels = rng.integers(0, k, size=n)
    x = centres[labels] + 0.5 * rng.normal(size=(n, d))
    return x.astype(np.float32), labels


def clustered_sparse(n, d, k, seed):
    """Each cluster lives on its own block of d/k columns (values around 5 with noise 0.3), and
    each row also has 0 to 3 small values (noise 0.3) in random columns: sparse rows (about
    d/k + 1.5 non-zeros) in well separated clusters."""
    rng = np.random.default_rng(seed)
    block = d // k
    labels = rng.integers(0, k, size=n)
    x = np.zeros((n, d))
    for i in range(n):
        extra = rng.integers(0, d, size=rng.integers(0, 4))
        x[i, extra] = 0.3 * rng.normal(size=len(extra))
        cols = np.arange(labels[i] * block, (labels[i] + 1) * block)
        x[i, cols] = 5 + 0.3 * rng.normal(size=block)
    return x.astype(np.float32), labels


# --- reference ------------------------------------------------------------------------------


def assign(x, centres):
    d2 = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.argmin(d2, axis=1), np.maximum(d2.min(axis=1), 0)


def wcss(x, centres):
    a = assign(x, centres)[0]
    return float(((x - centres[a]) ** 2).sum())


def lloyd(x, centres, max_iter=300, tol=1e-10):
    """Lloyd's algorithm from the given centres (a centre with no points stays)."""
    c = centres.copy()
    previous = np.inf
    for _ in range(max_iter):
        a = assign(x, c)[0]
        cost = float(((x - c[a]) ** 2).sum())
        if previous - cost <= tol * cost:
            break
        previous = cost
        for j in range(c.shape[0]):
            members = x[a == j]
            if len(members):
                c[j] = members.mean(axis=0)
    return c, wcss(x, c)


def purity(x, labels, centres):
    a = assign(x, centres)[0]
    total = 0
    for j in range(centres.shape[0]):
        members = labels[a == j]
        if len(members):
            total += np.bincount(members).max()
    return total / len(labels)


def check_model(model, x, labels, what, compare_lloyd=True, recovers=True):
    x64 = x.astype(np.float64)
    centres = np.array(model["centers"])
    p = purity(x64, labels, centres)
    if recovers:
        check(p >= 0.99, "%s: recovers the clusters (purity %.4f)" % (what, p))
    else:
        print("      %s: purity %.4f" % (what, p))
    ours = model["wcss"]
    numpy_wcss = wcss(x64, centres)
    check(abs(ours - numpy_wcss) <= 1e-6 * numpy_wcss,
          "%s: WCSS %.6g is NumPy's for these centres (%.6g)" % (what, ours, numpy_wcss))
    sizes = np.bincount(assign(x64, centres)[0], minlength=centres.shape[0])
    check(list(sizes) == [int(s) for s in model["cluster_sizes"]], "%s: cluster sizes" % what)
    if compare_lloyd:
        initial = np.array(model["initial_centers"])
        _, ref = lloyd(x64, initial)
        rel = (ours - ref) / ref
        check(rel <= 0.02, "%s: WCSS within 2%% of NumPy's Lloyd's from the same initial centres "
              "(%.6g vs %.6g, %+.4f%%)" % (what, ours, ref, 100 * rel))
        return rel
    return None


def distances(x, centres):
    """Squared distance of every row to every centre, summed term by term as the program does."""
    return ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)


def load_metrics(directory):
    with open(os.path.join(directory, "metrics.json")) as f:
        return json.load(f)


def metric_lines(stdout):
    """The "#metric channel:name=value" lines, by the regex docs/algorithms.md gives, last value
    of each name."""
    found = {}
    for m in re.finditer(r"#metric ([a-z_]+:[a-z_0-9]+)=([^\s]+)", stdout):
        found[m.group(1)] = float(m.group(2))
    return found


def check_test_metrics(directory, stdout, test, what):
    metrics = load_metrics(directory)
    model = load_model(directory)
    centres = np.array(model["centers"])
    ssd = float(distances(test.astype(np.float64), centres).min(axis=1).sum())
    check(abs(metrics["test:ssd"] - ssd) <= 1e-9 * ssd,
          "%s: test:ssd %.10g is NumPy's for the model's centres (%.10g)" % (what, metrics["test:ssd"], ssd))
    msd = ssd / test.shape[0]
    check(abs(metrics["test:msd"] - msd) <= 1e-9 * msd, "%s: test:msd is NumPy's (%.10g)" % (what, msd))
    check(metrics["train:ssd"] == model["wcss"] and metrics["train:msd"] == model["wcss"] / model["records"],
          "%s: train:ssd and train:msd are the final pass's WCSS and its mean" % what)
    lines = metric_lines(stdout)
    check(all(lines.get(name) == value for name, value in metrics.items()) and "train:msd" in lines,
          "%s: the #metric lines carry metrics.json's values (%s)" % (what, sorted(lines)))


def check_predictions(text, x, centres, what):
    rows = [json.loads(line) for line in text.splitlines()]
    if not check_count(len(rows), x.shape[0], what):
        return
    d2 = distances(x.astype(np.float64), centres)
    closest = d2.argmin(axis=1)
    got_c = np.array([r["closest_cluster"] for r in rows])
    got_d = np.array([r["distance_to_cluster"] for r in rows])
    ref_d = np.sqrt(d2.min(axis=1))
    check(np.array_equal(got_c, closest), "%s: every record's closest_cluster is NumPy's, in order" % what)
    err = float(np.max(np.abs(got_d - ref_d) / np.maximum(ref_d, 1e-300)))
    check(err <= 1e-9, "%s: distance_to_cluster is NumPy's Euclidean distance (max rel. error %.1e)" % (what, err))


def check_count(got, want, what):
    check(got == want, "%s: one prediction a record (%d of %d)" % (what, got, want))
    return got == want


def same_centres(a, b):
    """Max distance between the centres of a and b matched greedily (order may differ)."""
    a, b = np.array(a), np.array(b)
    used = set()
    worst = 0.0
    for row in a:
        d = np.linalg.norm(b - row, axis=1)
        for j in np.argsort(d):
            if j not in used:
                used.add(j)
                worst = max(worst, d[j])
                break
    return worst


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

    k = 8
    dense, dense_labels = clustered_dense(6000, 16, k, seed=1)
    sparse, sparse_labels = clustered_sparse(4000, 64, k, seed=2)
    dense_files = rp.write_parts(w("dense"), dense, 6, labels=dense_labels)
    sparse_files = rp.write_parts(w("sparse"), sparse, 4, sparse=True, labels=sparse_labels)
    common = ["--quiet", "--k", str(k), "--mini_batch_size", "500", "--init_sample_size", "2000"]
    # A test channel of two files, from the dense data's distribution (its first 1500 rows).
    test = dense[:1500]
    test_files = rp.write_parts(w("test"), test, 2)
    test_opts = [a for f in test_files for a in ("--test", f)]

    if args.mpirun:
        mpirun = [args.mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "3"]
        for name, x, labels, files in (("dense", dense, dense_labels, dense_files),
                                       ("sparse", sparse, sparse_labels, sparse_files)):
            opts = common + ["--epochs", "3", "--init_method", "kmeans++"]
            single, multi = w(name + "_1"), w(name + "_3")
            extra = test_opts if name == "dense" else []
            t1 = run([prog] + opts + ["--model-dir", single] + extra + files)
            t3 = run(mpirun + [prog] + opts + ["--model-dir", multi] + extra + files)
            if t1 is None or t3 is None:
                continue
            check("ranks: 3" in last_stdout[0], "%s: the program ran as 3 MPI ranks" % name)
            print("      %s: 1 process %.2f s, 3 ranks %.2f s" % (name, t1, t3))
            if extra:
                check_test_metrics(multi, last_stdout[0], test, name + ", 3 ranks")
                # Prediction under mpirun: rank 0 reads and writes, once, what one process writes.
                p1, p3 = w(name + "_1.jsonl"), w(name + "_3.jsonl")
                model_file = os.path.join(single, "model.json")
                run([prog, "--quiet", "--predict", model_file, "--output", p1] + files)
                run(mpirun + [prog, "--quiet", "--predict", model_file, "--output", p3] + files)
                with open(p1) as f1, open(p3) as f3:
                    a, b = f1.read(), f3.read()
                check(a == b and a.count("\n") == x.shape[0],
                      "%s: prediction under 3 ranks writes one process's %d rows once" % (name, x.shape[0]))
            one, three = load_model(single), load_model(multi)
            check(three["records"] == x.shape[0], "%s, 3 ranks: every record read once (%d)" % (name, three["records"]))
            check_model(three, x, labels, name + ", 3 ranks")
            rel = abs(three["wcss"] - one["wcss"]) / one["wcss"]
            check(rel <= 1e-3, "%s: 3 ranks' WCSS equals one process's within 1e-3 (%.2e)" % (name, rel))
            dist = same_centres(three["centers"], one["centers"])
            check(dist <= 1e-2, "%s: 3 ranks' centres equal one process's up to order (max distance %.2e)"
                  % (name, dist))
        return

    # Random initial centres may start two in one cluster, and then Lloyd's (NumPy's as well as
    # ours) ends in a local minimum that merges two clusters: no purity check there, only the
    # comparison with Lloyd's from the same start.
    cases = [
        ("dense, kmeans++, 3 epochs", dense, dense_labels, dense_files, ["--init_method", "kmeans++", "--epochs", "3"],
         True),
        ("dense, random init, 2 epochs", dense, dense_labels, dense_files, ["--epochs", "2", "--seed", "3"], False),
        ("sparse, kmeans++, 3 epochs", sparse, sparse_labels, sparse_files,
         ["--init-method", "kmeans++", "--epochs", "3", "--feature-dim", "64"], True),
        ("sparse, random init, 1 epoch", sparse, sparse_labels, sparse_files, ["--seed", "5"], False),
    ]
    for i, (what, x, labels, files, opts, recovers) in enumerate(cases):
        out = w("model_%d" % i)
        seconds = run([prog] + common + ["--model-dir", out] + opts + files)
        if seconds is None:
            continue
        model = load_model(out)
        check(model["records"] == x.shape[0], "%s: %d records" % (what, x.shape[0]))
        check_model(model, x, labels, what, recovers=recovers)
        print("      %s: %.2f s" % (what, seconds))

    # Metrics with a test channel, and prediction mode, dense (--output) and sparse (stdout).
    out = w("model_test")
    if run([prog] + common + ["--init_method", "kmeans++", "--epochs", "2", "--model-dir", out] + test_opts
           + dense_files) is not None:
        check_test_metrics(out, last_stdout[0], test, "dense with a test channel")
        model_file = os.path.join(out, "model.json")
        centres = np.array(load_model(out)["centers"])
        predictions = w("predictions.jsonl")
        if run([prog, "--quiet", "--predict", model_file, "--output", predictions] + dense_files) is not None:
            with open(predictions) as f:
                check_predictions(f.read(), dense, centres, "predict, dense, --output")
            check(not os.path.exists(predictions + ".tmp"), "predict: no temporary file left")
    sparse_model = os.path.join(w("model_2"), "model.json")
    if os.path.exists(sparse_model) and run([prog, "--predict", sparse_model] + sparse_files) is not None:
        check_predictions(last_stdout[0], sparse, np.array(load_model(w("model_2"))["centers"]),
                          "predict, sparse, stdout")
    p = subprocess.run([prog, "--predict", os.path.join(w("x"), "none.json"), dense_files[0]], capture_output=True,
                       text=True)
    check(p.returncode == 1 and "none.json" in p.stderr, "predict: a missing model file is named")

    # The same seed gives the same initial centres (and model); another seed other ones.
    for seed, out in (("1", w("seed_a")), ("1", w("seed_b")), ("2", w("seed_c"))):
        run([prog] + common + ["--init_method", "kmeans++", "--seed", seed, "--model-dir", out] + dense_files)
    a, b, c = (load_model(w(n)) for n in ("seed_a", "seed_b", "seed_c"))
    check(a["initial_centers"] == b["initial_centers"] and a["centers"] == b["centers"],
          "the same seed gives the same initial centres and model")
    check(a["initial_centers"] != c["initial_centers"], "another seed gives other initial centres")
    initial = np.array(a["initial_centers"])
    check(initial.shape == (k, 16) and all(any(np.array_equal(row, r) for r in dense[:2000].astype(np.float64))
                                           for row in initial),
          "the initial centres are records of the first init_sample_size")

    # Extra centres (K = 2k during training), reduced to k by the local Lloyd's.
    out = w("model_extra")
    if run([prog] + common + ["--init_method", "kmeans++", "--epochs", "2", "--extra_center_factor", "2",
                              "--model-dir", out] + dense_files) is not None:
        model = load_model(out)
        check(np.array(model["initial_centers"]).shape == (2 * k, 16) and np.array(model["centers"]).shape == (k, 16),
              "extra_center_factor 2: 2k centres trained, k kept")
        check_model(model, dense, dense_labels, "extra_center_factor 2", compare_lloyd=False)

    # The WCSS of the last epoch (no extra pass) is close to the final pass's on converged data.
    out = w("model_last_epoch")
    if run([prog] + common + ["--init_method", "kmeans++", "--epochs", "3", "--wcss", "last_epoch",
                              "--model-dir", out] + dense_files) is not None:
        last = load_model(out)["wcss"]
        final = load_model(w("model_0"))["wcss"]
        check(abs(last - final) <= 0.02 * final, "wcss last_epoch %.6g within 2%% of the final pass's %.6g"
              % (last, final))

    # SageMaker's hyperparameters.json (string values); SageMaker's own extras are ignored.
    hp = w("hyperparameters.json")
    with open(hp, "w") as f:
        json.dump({"k": str(k), "feature_dim": "16", "mini_batch_size": "500", "epochs": "3",
                   "init_method": "kmeans++", "extra_center_factor": "auto", "local_lloyd_max_iter": "100",
                   "local_lloyd_tol": "0.0001", "local_lloyd_init_method": "kmeans++",
                   "init_sample_size": "2000", "sagemaker_program": "x"}, f)
    out = w("model_hp")
    if run([prog, "--quiet", "--hyperparameters", hp, "--model-dir", out] + dense_files) is not None:
        model = load_model(out)
        check(model["centers"] == load_model(w("model_0"))["centers"],
              "hyperparameters.json gives the model the same options on the command line give")

    # Pipe mode: one FIFO per epoch (train_0, train_1, ...), and one more for the final pass.
    channel_dir = w("channels")
    os.makedirs(channel_dir)
    epochs = 2
    for e in range(epochs + 1):
        os.mkfifo(os.path.join(channel_dir, "train_%d" % e))
    feeder = subprocess.Popen([sys.executable, "-c", """
import shutil, sys
for e in range(%d):
    with open('%s/train_%%d' %% e, 'wb') as f:
        for p in sys.argv[1:]:
            with open(p, 'rb') as src:
                shutil.copyfileobj(src, f)
""" % (epochs + 1, channel_dir)] + dense_files)
    out = w("model_pipe")
    ok = run([prog] + common + ["--init_method", "kmeans++", "--epochs", str(epochs), "--pipe-channel", "train",
                                "--data-dir", channel_dir, "--model-dir", out])
    if ok is None:
        feeder.kill()
    feeder.wait()
    if ok is not None:
        check_model(load_model(out), dense, dense_labels, "Pipe-mode FIFOs, 2 epochs")

    # --pipe-mode: SageMaker's layout, every channel from its FIFOs (train_0, train_1 for the
    # final pass, then test_0), the test channel there because inputdataconfig.json lists it.
    root = w("sagemaker")
    os.makedirs(os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "config"))
    with open(os.path.join(root, "config", "inputdataconfig.json"), "w") as f:
        json.dump({"train": {"TrainingInputMode": "Pipe"}, "test": {"TrainingInputMode": "Pipe"}}, f)
    fifos = [("train_0", dense_files), ("train_1", dense_files), ("test_0", test_files)]
    for name, _ in fifos:
        os.mkfifo(os.path.join(root, "data", name))
    feeder = subprocess.Popen([sys.executable, "-c", """
import json, shutil, sys
for name, files in json.loads(sys.argv[1]):
    with open('%s/data/' + name, 'wb') as f:
        for p in files:
            with open(p, 'rb') as src:
                shutil.copyfileobj(src, f)
""" % root, json.dumps(fifos)])
    out = w("model_pipe_mode")
    ok = run([prog] + common + ["--init_method", "kmeans++", "--pipe-mode", "--data-dir", os.path.join(root, "data"),
                                "--model-dir", out])
    if ok is None:
        feeder.kill()
    feeder.wait()
    if ok is not None:
        check_test_metrics(out, last_stdout[0], test, "--pipe-mode with a test FIFO")

    # Usage errors exit with 2.
    p = subprocess.run([prog, "--model-dir", w("x"), dense_files[0]], capture_output=True, text=True)
    check(p.returncode == 2 and "k is required" in p.stderr, "no k: usage error")
    p = subprocess.run([prog, "--k", "3", "--init_method", "best", dense_files[0]], capture_output=True, text=True)
    check(p.returncode == 2 and "random or kmeans++" in p.stderr, "bad init_method: usage error")


if __name__ == "__main__":
    main()
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all checks passed")
