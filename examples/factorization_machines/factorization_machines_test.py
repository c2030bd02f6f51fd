"""Reference checks of pipemode-factorization-machines against NumPy (run by CTest; see
examples/common/training_example.cmake).

Writes small data sets as RecordIO-protobuf (dense and sparse float32 records with a label, by
examples/common/recordio_protobuf.py), runs the program on them and checks:
- one epoch from a given initial model (--initial_model) equals a NumPy re-implementation of the
  same AdaGrad updates over the same batches to 1e-9 (dense and sparse, regressor and
  classifier, with weight decay, clipping and a fixed rescale_grad);
- with the factors at 0 and factors_lr 0 the model is the linear model of a NumPy linear update;
- on a planted factorization machine (one-hot user x item, as a recommender sees it) the test
  RMSE is within 5 % of the noise level; on a planted classifier the accuracy is reported;
- the printed metrics and metrics.json equal NumPy's from the final model, and --predict writes
  NumPy's scores and labels;
- with --mpirun, 3 ranks equal NumPy's re-implementation of the 3-rank batches to 1e-9, and
  reach the single process's test RMSE within 3 %.

Usage: /usr/bin/python3 factorization_machines_test.py --program PROGRAM --work DIR [--mpirun MPIRUN]
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


def load_json(directory, name="model.json"):
    with open(os.path.join(directory, name)) as f:
        return json.load(f)


def printed_metrics(stdout):
    """The `#metric <channel>:<name>=<value>` lines, as a SageMaker metric definition's regex
    (`#metric test:rmse=([^\\s]+)`) picks them up."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("#metric "):
            key, value = line[len("#metric "):].split()[0].split("=", 1)
            out[key] = float(value)
    return out


# --- the model in NumPy ---------------------------------------------------------------------


class Model:
    def __init__(self, predictor, w0, w, v):
        self.predictor, self.w0, self.w, self.v = predictor, float(w0), np.array(w, float), np.array(v, float)

    @staticmethod
    def from_json(m):
        return Model(m["predictor_type"], m["w0"], m["w"], np.array(m["V"], float).reshape(len(m["w"]), m["num_factors"]))

    def write(self, path):
        d, k = self.v.shape
        with open(path, "w") as f:
            # algorithm and format_version: the model file's header, which model_file checks.
            json.dump({"algorithm": "factorization_machines", "format_version": 1, "predictor_type": self.predictor, "feature_dim": d, "num_factors": k, "w0": self.w0,
                       "w": self.w.tolist(), "V": self.v.tolist()}, f)

    def yhat(self, x):
        s = x @ self.v
        return self.w0 + x @ self.w + 0.5 * (np.sum(s * s, axis=1) - (x * x) @ np.sum(self.v * self.v, axis=1))

    def copy(self):
        return Model(self.predictor, self.w0, self.w.copy(), self.v.copy())


def train_epoch(model, batches, hp, state=None):
    """AdaGrad over `batches` [(x, y, touched)], as docs/algorithms.md states it: the summed
    gradient rescaled (rescale_grad, or 1/rows), clipped, h += g^2, p -= lr (g / sqrt(h + eps)
    + wd p), on the bias and the touched features only."""
    m = model.copy()
    d, k = m.v.shape
    if state is None:
        state = {"h0": 0.0, "hw": np.zeros(d), "hv": np.zeros((d, k))}
    for x, y, touched in batches:
        yhat = m.yhat(x)
        dl = yhat - y if m.predictor == "regressor" else 1 / (1 + np.exp(-yhat)) - y
        s = x @ m.v
        g0 = dl.sum()
        gw = x.T @ dl
        gv = x.T @ (dl[:, None] * s) - m.v * ((x * x).T @ dl)[:, None]
        scale = hp["rescale_grad"] if hp.get("rescale_grad", 0) > 0 else 1.0 / len(y)

        def step(p, h, g, lr, wd):
            g = g * scale
            if hp.get("clip_gradient", 0) > 0:
                g = np.clip(g, -hp["clip_gradient"], hp["clip_gradient"])
            h = h + g * g
            return p - lr * (g / np.sqrt(h + hp["eps"]) + wd * p), h

        m.w0, state["h0"] = step(m.w0, state["h0"], g0, hp["bias_lr"], hp["bias_wd"])
        t = touched
        m.w[t], state["hw"][t] = step(m.w[t], state["hw"][t], gw[t], hp["linear_lr"], hp["linear_wd"])
        m.v[t], state["hv"][t] = step(m.v[t], state["hv"][t], gv[t], hp["factors_lr"], hp["factors_wd"])
    return m


def batches_of(parts, batch, sparse):
    """The single process's batches: the files' rows in order, `batch` at a time (a batch runs
    on across file boundaries)."""
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    out = []
    for i in range(0, len(y), batch):
        xb = x[i:i + batch]
        touched = np.nonzero(np.any(xb != 0, axis=0))[0] if sparse else np.arange(x.shape[1])
        out.append((xb, y[i:i + batch], touched))
    return out


def rank_batches(parts, ranks, batch, sparse):
    """The batches of `ranks` MPI ranks: rank r reads files r, r + ranks, ... in batches of
    ceil(batch / ranks); global batch t is the ranks' batch t together (their sum of gradients)."""
    per_rank = -(-batch // ranks)
    ranked = [batches_of(parts[r::ranks], per_rank, sparse) if parts[r::ranks] else [] for r in range(ranks)]
    out = []
    for t in range(max(len(b) for b in ranked)):
        got = [b[t] for b in ranked if t < len(b)]
        x = np.concatenate([g[0] for g in got])
        y = np.concatenate([g[1] for g in got])
        touched = np.unique(np.concatenate([g[2] for g in got]))
        out.append((x, y, touched))
    return out


def metrics_of(model, x, y):
    z = model.yhat(x)
    if model.predictor == "regressor":
        return {"rmse": float(np.sqrt(np.mean((z - y) ** 2)))}
    pred = z >= 0
    actual = y > 0.5
    tp, fp, fn = np.sum(pred & actual), np.sum(pred & ~actual), np.sum(~pred & actual)
    ce = np.mean(np.maximum(z, 0) - y * z + np.log1p(np.exp(-np.abs(z))))
    return {"binary_classification_accuracy": float(np.mean(pred == actual)),
            "binary_classification_cross_entropy": float(ce),
            "binary_f_beta": float(2 * tp / (2 * tp + fn + fp)) if tp + fn + fp else 0.0}


# --- data -----------------------------------------------------------------------------------


def write(directory, x, y, files, sparse):
    """Writes (x, y) as float32 records in `files` parts; returns the paths and the parts as
    the program reads them (float32 values as float64)."""
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    paths = rp.write_parts(directory, x32, files, sparse=sparse, labels=y32)
    bounds = np.linspace(0, x.shape[0], files + 1).astype(int)
    parts = [(x32[a:b].astype(np.float64), y32[a:b].astype(np.float64)) for a, b in zip(bounds[:-1], bounds[1:])]
    return paths, parts


def random_features(n, d, density, rng):
    x = rng.normal(size=(n, d))
    if density < 1:
        x *= rng.uniform(size=(n, d)) < density
    return x


def planted_recommender(n, users, items, k, noise, rng, truth=None):
    """One-hot user and item columns (d = users + items); y = w0 + w_u + w_i + <v_u, v_i> +
    noise. Returns x, y and the planted model (kept for the test set)."""
    d = users + items
    if truth is None:
        truth = Model("regressor", 0.5, rng.normal(scale=0.5, size=d), rng.normal(scale=0.7, size=(d, k)))
    x = np.zeros((n, d))
    x[np.arange(n), rng.integers(0, users, n)] = 1
    x[np.arange(n), users + rng.integers(0, items, n)] = 1
    return x, truth.yhat(x) + noise * rng.normal(size=n), truth


class loopback_nginx:
    """nginx serving `root` on 127.0.0.1 (scripts/lib/servers.sh, run by a bash that stops it
    when its stdin closes); the port, or None when nginx cannot be started."""

    def __init__(self, root):
        self.root = root
        self.shell = None

    def __enter__(self):
        servers = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lib", "servers.sh")
        script = ('source "$1" && trap pipemode_stop_servers EXIT && pipemode_start_nginx "$2" >&2 '
                  '&& echo "$PIPEMODE_NGINX_PORT" && read -r _')
        try:
            self.shell = subprocess.Popen(["bash", "-c", script, "bash", servers, self.root], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            return None
        line = self.shell.stdout.readline().strip()
        return int(line) if line.isdigit() else None

    def __exit__(self, *exc):
        if self.shell:
            self.shell.stdin.close()
            self.shell.wait(timeout=30)
        return False


def summary_fields(stdout):
    """The program's closing `name: value` lines (records, ranks, gradient bytes sent, ...)."""
    return {a.strip(): b.strip() for a, b in (line.split(":", 1) for line in stdout.splitlines()
                                              if ":" in line and not line.startswith("#metric "))}


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
    rng = np.random.default_rng(15)

    hp = {"bias_lr": 0.05, "linear_lr": 0.04, "factors_lr": 0.03, "bias_wd": 0.01, "linear_wd": 0.02,
          "factors_wd": 0.005, "eps": 1e-8}
    hp_opts = [a for key, value in hp.items() for a in ("--" + key, repr(value))]

    # Small data for the exact one-epoch checks: dense (d 8) and sparse (d 30, 20 % present),
    # with labels for both predictors.
    k = 3
    exact = {}
    for layout, d, density in (("dense", 8, 1.0), ("sparse", 30, 0.2)):
        x = random_features(500, d, density, rng)
        truth = Model("regressor", 0.3, rng.normal(size=d), 0.5 * rng.normal(size=(d, k)))
        z = truth.yhat(x)
        for predictor, y in (("regressor", z + 0.1 * rng.normal(size=len(z))),
                             ("binary_classifier", (z + rng.logistic(size=len(z)) > 0).astype(float))):
            paths, parts = write(w(layout + "_" + predictor), x, y, 4, layout == "sparse")
            initial = Model(predictor, 0.1, 0.1 * rng.normal(size=d), 0.1 * rng.normal(size=(d, k)))
            initial.write(w(layout + "_" + predictor + "_initial.json"))
            exact[(layout, predictor)] = (paths, parts, initial, w(layout + "_" + predictor + "_initial.json"))

    if args.mpirun:
        mpirun = [args.mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "3"]
        # Each mpirun costs seconds of start-up (tens under ASan), so there are two: one epoch of a
        # wide sparse recommender (exact, and it measures the traffic), and the planted
        # recommender in dense records against one process (exact over its epochs too).
        def one_epoch(what, paths, parts, initial_path, initial, predictor, batch, extra, h, sparse):
            out = w("mpi_" + what.replace(" ", "_"))
            t = run(mpirun + [prog, "--quiet", "--predictor_type", predictor, "--num_factors",
                              str(initial.v.shape[1]), "--mini_batch_size", str(batch), "--initial_model",
                              initial_path, "--model-dir", out] + hp_opts + extra + paths)
            if t is None:
                return None
            check("ranks: 3" in last_stdout[0], "%s: the program ran as 3 MPI ranks" % what)
            ref = train_epoch(initial, rank_batches(parts, 3, batch, sparse), h)
            got = Model.from_json(load_json(out))
            err = max(abs(got.w0 - ref.w0), np.max(np.abs(got.w - ref.w)), np.max(np.abs(got.v - ref.v)))
            check(err <= 1e-9, "%s, 3 ranks: one epoch equals NumPy over the ranks' batches (max error %.1e, %.2f s)"
                  % (what, err, t))
            return summary_fields(last_stdout[0])

        # What the union of touched rows saves when feature_dim is large: 3000 users x 2000
        # items, 8 factors, batches of 300 rows over 3 ranks touch at most 600 of 5000 features.
        x, y, _ = planted_recommender(1500, 3000, 2000, 8, 0.1, rng)
        paths, parts = write(w("wide"), x, y, 3, True)
        initial = Model("regressor", 0.1, 0.1 * rng.normal(size=5000), 0.1 * rng.normal(size=(5000, 8)))
        initial.write(w("wide_initial.json"))
        fields = one_epoch("sparse regressor, feature_dim 5000", paths, parts, w("wide_initial.json"), initial,
                           "regressor", 300, [], hp, True)
        if fields:
            sent, full = float(fields["gradient bytes sent"]), float(fields["full allreduce bytes"])
            check(sent <= 0.15 * full,
                  "feature_dim 5000, batches of 300 one-hot pairs: gradient payload %.0f bytes, %.3f of a full "
                  "allreduce's %.0f (%s features a batch)" % (sent, sent / full, full, fields["features a batch"]))

        # The planted recommender with 3 ranks against 1: the same test RMSE within 3 %. Its
        # training records are dense (every rank's batch touches every feature, the exchange's
        # other case) and both start from one initial model, so that the 3 ranks' model after
        # all epochs is also checked against NumPy's re-implementation of their batches, with
        # clipping. The test records are sparse.
        x, y, truth = planted_recommender(5000, 30, 20, 3, 0.1, rng)
        xt, yt, _ = planted_recommender(1000, 30, 20, 3, 0.1, rng, truth)
        paths, parts = write(w("rec_train"), x, y, 6, False)
        test_paths, _ = write(w("rec_test"), xt, yt, 1, True)
        d = x.shape[1]
        initial = Model("regressor", 0.01 * rng.normal(), 0.01 * rng.normal(size=d), 0.1 * rng.normal(size=(d, 3)))
        initial.write(w("rec_initial.json"))
        # Fewer, larger batches than the single-process check: each batch costs 3 ranks on 2
        # cores two collectives.
        epochs, batch = 16, 250
        opts = recommender_options(k=3, epochs=epochs, batch=batch) + ["--clip_gradient", "0.5", "--initial_model",
                                                                       w("rec_initial.json")]
        rmse = {}
        for ranks, cmd in ((1, []), (3, mpirun)):
            out = w("rec_%d" % ranks)
            t = run(cmd + [prog] + opts + ["--model-dir", out, "--test", test_paths[0]] + paths)
            if t is not None:
                rmse[ranks] = load_json(out, "metrics.json")["test:rmse"]
                if ranks == 3:
                    check("ranks: 3" in last_stdout[0], "planted recommender: the program ran as 3 MPI ranks")
                    h = {"bias_lr": 0.1, "linear_lr": 0.1, "factors_lr": 0.1, "bias_wd": 0.0, "linear_wd": 0.0001,
                         "factors_wd": 0.0001, "eps": 1e-8, "clip_gradient": 0.5}
                    state = {"h0": 0.0, "hw": np.zeros(d), "hv": np.zeros((d, 3))}
                    ref = initial
                    for _ in range(epochs):
                        ref = train_epoch(ref, rank_batches(parts, 3, batch, False), h, state)
                    got = Model.from_json(load_json(out))
                    err = max(abs(got.w0 - ref.w0), np.max(np.abs(got.w - ref.w)), np.max(np.abs(got.v - ref.v)))
                    check(err <= 1e-9, "dense regressor, clipped, 3 ranks: %d epochs equal NumPy over the ranks' "
                          "batches (max error %.1e, %.2f s)" % (epochs, err, t))
                print("      %s" % " ".join(line.strip() for line in last_stdout[0].splitlines()
                                            if "gradient bytes" in line or "full allreduce" in line
                                            or "features a batch" in line))
        if len(rmse) == 2:
            check(abs(rmse[3] - rmse[1]) <= 0.03 * rmse[1],
                  "planted recommender: 3 ranks' test RMSE %.4f within 3 %% of 1 process's %.4f" % (rmse[3], rmse[1]))
        return

    # One epoch from a given model equals NumPy's, dense and sparse, both predictors.
    for (layout, predictor), (paths, parts, initial, initial_path) in exact.items():
        for batch, extra, h in ((50, [], hp),
                                (64, ["--clip_gradient", "0.05", "--rescale_grad", "0.02"],
                                 dict(hp, clip_gradient=0.05, rescale_grad=0.02))):
            out = w("exact_%s_%s_%d" % (layout, predictor, batch))
            if run([prog, "--quiet", "--predictor_type", predictor, "--num_factors", str(k), "--mini_batch_size",
                    str(batch), "--initial_model", initial_path, "--model-dir", out] + hp_opts + extra + paths) is None:
                continue
            ref = train_epoch(initial, batches_of(parts, batch, layout == "sparse"), h)
            got = Model.from_json(load_json(out))
            err = max(abs(got.w0 - ref.w0), np.max(np.abs(got.w - ref.w)), np.max(np.abs(got.v - ref.v)))
            moved = np.max(np.abs(ref.v - initial.v))
            check(err <= 1e-9 and moved > 1e-3,
                  "%s %s, batch %d%s: one epoch equals NumPy's AdaGrad (max error %.1e; factors moved %.2f)"
                  % (layout, predictor, batch, " clipped, rescaled" if extra else "", err, moved))

    # The same records from a Pipe-mode FIFO, from http:// URLs and from s3:// keys served by
    # nginx on loopback: byte for byte the same model.json as from the files.
    paths, parts, initial, initial_path = exact[("sparse", "binary_classifier")]
    base_opts = [prog, "--quiet", "--predictor_type", "binary_classifier", "--num_factors", str(k),
                 "--mini_batch_size", "50", "--initial_model", initial_path] + hp_opts
    reference_model = open(os.path.join(w("exact_sparse_binary_classifier_50"), "model.json"), "rb").read()
    channel_dir = w("channels")
    os.makedirs(channel_dir)
    fifo = os.path.join(channel_dir, "train_0")
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            for path in paths:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, f)

    writer = threading.Thread(target=feed)
    writer.start()
    ok = run(base_opts + ["--pipe-channel", "train", "--data-dir", channel_dir, "--model-dir", w("pipe")])
    writer.join()
    if ok is not None:
        check(open(os.path.join(w("pipe"), "model.json"), "rb").read() == reference_model,
              "Pipe-mode FIFO: the same model.json as from the files")
    served = w("www", "bucket", "fm")
    os.makedirs(served)
    for path in paths:
        shutil.copy(path, served)
    with loopback_nginx(w("www")) as port:
        if port is None:
            print("      (no nginx: the http:// and s3:// reads are not checked)")
        for scheme in ("http", "s3") if port else ():
            names = [os.path.basename(p_) for p_ in paths]
            if scheme == "http":
                sources = ["http://127.0.0.1:%d/bucket/fm/%s" % (port, n) for n in names]
            else:
                sources = ["--endpoint-url", "http://127.0.0.1:%d" % port, "--path-style", "--no-sign-request"] \
                    + ["s3://bucket/fm/%s" % n for n in names]
            out = w("served_" + scheme)
            if run(base_opts + ["--model-dir", out] + sources) is not None:
                check(open(os.path.join(out, "model.json"), "rb").read() == reference_model,
                      "%s:// on loopback: the same model.json as from the files" % scheme)

    # Two epochs: AdaGrad's history carries over between epochs.
    paths, parts, initial, initial_path = exact[("sparse", "regressor")]
    out = w("two_epochs")
    if run([prog, "--quiet", "--predictor_type", "regressor", "--num_factors", str(k), "--mini_batch_size", "100",
            "--epochs", "2", "--initial_model", initial_path, "--model-dir", out] + hp_opts + paths) is not None:
        state = {"h0": 0.0, "hw": np.zeros(30), "hv": np.zeros((30, k))}
        ref = train_epoch(initial, batches_of(parts, 100, True), hp, state)
        ref = train_epoch(ref, batches_of(parts, 100, True), hp, state)
        got = Model.from_json(load_json(out))
        err = max(abs(got.w0 - ref.w0), np.max(np.abs(got.w - ref.w)), np.max(np.abs(got.v - ref.v)))
        check(err <= 1e-9, "sparse regressor, 2 epochs: equals NumPy (max error %.1e)" % err)

    # Factors at 0 with factors_lr 0: a linear model, equal to NumPy's linear AdaGrad.
    for layout in ("dense", "sparse"):
        paths, parts, initial, _ = exact[(layout, "regressor")]
        out = w("linear_" + layout)
        if run([prog, "--quiet", "--predictor_type", "regressor", "--num_factors", str(k), "--mini_batch_size", "50",
                "--factors_init_method", "constant", "--factors_init_value", "0", "--factors_lr", "0",
                "--bias_init_method", "constant", "--bias_init_value", "0",
                "--linear_init_method", "constant", "--linear_init_value", "0", "--model-dir", out]
               + [a for key, value in hp.items() if key != "factors_lr" for a in ("--" + key, repr(value))]
               + paths) is None:
            continue
        got = Model.from_json(load_json(out))
        # The linear update written out alone: yhat = w0 + x w.
        w0, wl, h0, hw = 0.0, np.zeros(initial.w.shape), 0.0, np.zeros(initial.w.shape)
        for xb, yb, touched in batches_of(parts, 50, layout == "sparse"):
            dl = w0 + xb @ wl - yb
            g0, gw = dl.sum() / len(yb), (xb.T @ dl)[touched] / len(yb)
            h0 += g0 * g0
            w0 -= hp["bias_lr"] * (g0 / np.sqrt(h0 + hp["eps"]) + hp["bias_wd"] * w0)
            hw[touched] += gw * gw
            wl[touched] -= hp["linear_lr"] * (gw / np.sqrt(hw[touched] + hp["eps"]) + hp["linear_wd"] * wl[touched])
        err = max(abs(got.w0 - w0), np.max(np.abs(got.w - wl)))
        check(err <= 1e-9 and np.all(got.v == 0),
              "%s, factors 0 and factors_lr 0: the linear model's update (max error %.1e, V stays 0)" % (layout, err))

    # Planted recommender: test RMSE within 5 % of the noise; metrics printed and in
    # metrics.json equal NumPy's on the final model; --predict writes the same scores.
    noise = 0.1
    x, y, truth = planted_recommender(5000, 30, 20, 3, noise, rng)
    xt, yt, _ = planted_recommender(1000, 30, 20, 3, noise, rng, truth)
    paths, _ = write(w("rec_train"), x, y, 3, True)
    test_paths, test_parts = write(w("rec_test"), xt, yt, 1, True)
    out = w("recommender")
    seconds = run([prog] + recommender_options(k=3, epochs=20) + ["--model-dir", out, "--validation", test_paths[0],
                                                      "--test", test_paths[0]] + paths)
    if seconds is not None:
        printed = printed_metrics(last_stdout[0])
        metrics = load_json(out, "metrics.json")
        model = Model.from_json(load_json(out))
        ref = metrics_of(model, *test_parts[0])["rmse"]
        check(metrics["test:rmse"] <= 1.05 * noise,
              "planted recommender: test RMSE %.4f within 5 %% of the noise %.2f (%.2f s)"
              % (metrics["test:rmse"], noise, seconds))
        check(abs(metrics["test:rmse"] - ref) <= 1e-9 * ref and abs(printed.get("test:rmse", 0) - ref) <= 1e-8 * ref
              and metrics["validation:rmse"] == metrics["test:rmse"] and "train:rmse" in metrics,
              "planted recommender: printed and metrics.json test:rmse equal NumPy's %.6f" % ref)
        predictions = w("predictions.jsonl")
        if run([prog, "--predict", os.path.join(out, "model.json"), "--output", predictions, test_paths[0]]):
            with open(predictions) as f:
                scores = np.array([json.loads(line)["score"] for line in f])
            expected = model.yhat(test_parts[0][0])
            check(scores.shape == expected.shape and np.max(np.abs(scores - expected)) <= 1e-9,
                  "--predict: %d regression scores equal NumPy's" % len(expected))

    # Planted classifier: accuracy reported, and the metrics equal NumPy's from the model.
    x, z, truth = planted_recommender(3000, 30, 20, 3, 0.0, rng)
    xt, zt, _ = planted_recommender(1000, 30, 20, 3, 0.0, rng, truth)
    y, yt = (z > np.median(z)).astype(float), (zt > np.median(z)).astype(float)
    paths, _ = write(w("cls_train"), x, y, 3, False)  # dense records this time
    test_paths, test_parts = write(w("cls_test"), xt, yt, 1, True)
    out = w("classifier")
    seconds = run([prog] + recommender_options(k=3, predictor="binary_classifier", epochs=10)
                  + ["--model-dir", out, "--test", test_paths[0]] + paths)
    if seconds is not None:
        metrics = load_json(out, "metrics.json")
        model = Model.from_json(load_json(out))
        ref = metrics_of(model, *test_parts[0])
        err = max(abs(metrics["test:" + key] - value) for key, value in ref.items())
        check(err <= 1e-9, "planted classifier: test metrics equal NumPy's (max error %.1e)" % err)
        check(metrics["test:binary_classification_accuracy"] >= 0.9,
              "planted classifier (dense records): test accuracy %.3f, F1 %.3f, cross-entropy %.3f (%.2f s)"
              % (metrics["test:binary_classification_accuracy"], metrics["test:binary_f_beta"],
                 metrics["test:binary_classification_cross_entropy"], seconds))
        predictions = w("cls_predictions.jsonl")
        if run([prog, "--predict", os.path.join(out, "model.json"), "--output", predictions, test_paths[0]]):
            with open(predictions) as f:
                rows = [json.loads(line) for line in f]
            p = 1 / (1 + np.exp(-model.yhat(test_parts[0][0])))
            check(len(rows) == len(p) and np.max(np.abs(np.array([r["score"] for r in rows]) - p)) <= 1e-9
                  and all(r["predicted_label"] == int(q >= 0.5) for r, q in zip(rows, p)),
                  "--predict: %d classifier scores and labels equal NumPy's" % len(p))

    # Usage errors.
    p = subprocess.run([prog, "--num_factors", "2", "--model-dir", w("x"), paths[0]], capture_output=True, text=True)
    check(p.returncode == 2 and "predictor_type is required" in p.stderr, "no predictor_type: usage error")
    p = subprocess.run([prog, "--predictor_type", "classifier", "--num_factors", "2", paths[0]],
                       capture_output=True, text=True)
    check(p.returncode == 2 and "binary_classifier or regressor" in p.stderr, "a wrong predictor_type: usage error")


def recommender_options(k, predictor="regressor", epochs=25, batch=100):
    return ["--quiet", "--predictor_type", predictor, "--num_factors", str(k), "--epochs", str(epochs),
            "--mini_batch_size", str(batch), "--bias_lr", "0.1", "--linear_lr", "0.1", "--factors_lr", "0.1",
            "--bias_wd", "0", "--linear_wd", "0.0001", "--factors_wd", "0.0001", "--factors_init_sigma", "0.1",
            "--seed", "3"]


if __name__ == "__main__":
    main()
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all checks passed")
