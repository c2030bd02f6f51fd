"""Reference checks of pipemode-linear-learner (run by CTest; see
examples/linear_learner/CMakeLists.txt).

Data are written as RecordIO-protobuf files with examples/common/recordio_protobuf.py (dense
and sparse float32 records with a label "values") and read back through the program.

- One model, sgd with a fixed learning rate, zero start, file order: the weights after one
  epoch equal a NumPy re-implementation of the same updates to 1e-9 (squared loss with momentum
  and wd, dense and sparse; logistic; softmax).
- With scikit-learn (from --python-path; those checks are skipped without it), trained to
  convergence on its bundled data: logistic on breast cancer against LogisticRegression
  (C = 1 / (n wd)), squared loss on diabetes against Ridge (alpha = n wd), softmax on digits
  (sparse records) against multinomial LogisticRegression, hinge against LinearSVC, quantile
  against QuantileRegressor (alpha = l1), huber against SGDRegressor (alpha = wd); the metrics
  the program prints recomputed by sklearn.metrics from its prediction mode's output.
- With --mpirun: 3 ranks against 1 on the breast-cancer run.

Usage: /usr/bin/python3 linear_learner_test.py --program PROGRAM --work DIR
           [--python-path DIR] [--mpirun MPIRUN]
Exit status 0 when every check passes, 1 otherwise, 77 (CTest's skip) without NumPy.
"""

import argparse
import json
import math
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


def check(ok, what):
    print(("ok:   " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def run(cmd):
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print("command failed (%d): %s\n%s%s" % (p.returncode, " ".join(cmd), p.stdout, p.stderr))
        failures.append(" ".join(cmd))
        return None
    print("  (%.2f s) %s" % (time.monotonic() - start, " ".join(os.path.basename(c) if i == 0 else c
                                                              for i, c in enumerate(cmd))))
    return p.stdout


def train(args, work, name, files, hyper, extra=(), mpi=None):
    """Runs the program on `files`; returns (model, metrics, stdout) or None."""
    model_dir = os.path.join(work, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    cmd = [args.program, "--quiet", "--model-dir", model_dir]
    for k, v in hyper.items():
        cmd += ["--" + k, str(v)]
    cmd += list(extra) + list(files)
    if mpi:
        cmd = [args.mpirun, "--allow-run-as-root", "--oversubscribe", "-np", str(mpi)] + cmd
    out = run(cmd)
    if out is None:
        return None
    with open(os.path.join(model_dir, "model.json")) as f:
        model = json.load(f)
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    # Every metric of metrics.json is the last value printed under its name on a
    # "#metric channel:name=value[ epoch=E]" line (the form a SageMaker metric definition's
    # regex picks up), and nothing is printed that metrics.json does not hold.
    printed = {}
    for line in out.splitlines():
        m = re.fullmatch(r"#metric ([a-z_]+:[a-z_]+)=(\S+)( epoch=[1-9][0-9]*)?", line)
        if m:
            printed[m.group(1)] = float(m.group(2))
    check(printed.keys() == metrics.keys()
          and all(printed[k] == v or (v is None and not math.isfinite(printed[k])) for k, v in metrics.items()),
          "%s: the #metric lines' last values are metrics.json's (%d metrics)" % (name, len(metrics)))
    return model, metrics, out


def predict(args, work, model_dir, files):
    out_path = os.path.join(work, "predictions.jsonl")
    if run([args.program, "--quiet", "--predict", os.path.join(model_dir, "model.json"), "--output", out_path]
           + list(files)) is None:
        return None
    with open(out_path) as f:
        return [json.loads(line) for line in f]


def weights(model):
    return np.array(model["weights"], dtype=np.float64), np.array(model["bias"], dtype=np.float64)


# --- the NumPy re-implementation -----------------------------------------------------------


def numpy_sgd_epoch(x, y, loss, batch, lr, wd, momentum, classes=1):
    d = x.shape[1]
    w = np.zeros((d, classes))
    b = np.zeros(classes)
    vw = np.zeros_like(w)
    vb = np.zeros_like(b)
    for s in range(0, x.shape[0], batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        n = xb.shape[0]
        z = xb @ w + b
        if loss == "squared_loss":
            dz = z - yb[:, None]
        elif loss == "logistic":
            dz = 1 / (1 + np.exp(-z)) - yb[:, None]
        else:  # softmax
            e = np.exp(z - z.max(axis=1, keepdims=True))
            dz = e / e.sum(axis=1, keepdims=True)
            dz[np.arange(n), yb.astype(int)] -= 1
        gw = xb.T @ dz / n + wd * w
        gb = dz.sum(axis=0) / n
        vw = momentum * vw + gw
        vb = momentum * vb + gb
        w -= lr * vw
        b -= lr * vb
    return w, b


def check_one_epoch(args, work):
    rng = np.random.default_rng(5)
    n, d = 203, 9
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[rng.random(size=(n, d)) < 0.4] = 0  # zeros for the sparse records
    truth = rng.normal(size=d)
    cases = [
        ("squared_loss", "regressor", (x.astype(np.float64) @ truth + 0.3 * rng.normal(size=n)).astype(np.float32), 1),
        ("logistic", "binary_classifier", (x.astype(np.float64) @ truth > 0).astype(np.float32), 1),
        ("softmax", "multiclass_classifier", np.digitize(x.astype(np.float64) @ truth, [-1, 1]).astype(np.float32), 3),
    ]
    for loss, predictor, y, classes in cases:
        ref_w, ref_b = numpy_sgd_epoch(x.astype(np.float64), y.astype(np.float64), loss, 16, 0.05, 0.01, 0.5, classes)
        for layout in ("dense", "sparse"):
            path = os.path.join(work, "epoch-%s-%s.rec" % (loss, layout))
            (rp.write_sparse if layout == "sparse" else rp.write_dense)(path, x, labels=y)
            hyper = {"predictor_type": predictor, "optimizer": "sgd", "learning_rate": 0.05, "wd": 0.01,
                     "momentum": 0.5, "mini_batch_size": 16, "epochs": 1, "num_models": 1,
                     "binary_classifier_model_selection_criteria": "loss_function"}
            if classes > 1:
                hyper["num_classes"] = classes
            r = train(args, work, "epoch-%s-%s" % (loss, layout), [path], hyper)
            if r is None:
                continue
            w, b = weights(r[0])
            err = max(np.abs(w - ref_w).max(), np.abs(b - ref_b).max())
            check(err < 1e-9, "one sgd epoch, %s, %s: weights equal NumPy's (max |diff| %.2e < 1e-9)"
                  % (loss, layout, err))


# --- scikit-learn --------------------------------------------------------------------------


def standardized(x):
    x = x.astype(np.float64)
    s = x.std(axis=0)
    s[s == 0] = 1
    return ((x - x.mean(axis=0)) / s).astype(np.float32)


def scores_of(model, x):
    w, b = weights(model)
    return x.astype(np.float64) @ w + b


def check_metrics(args, work, name, model_dir, path, metrics, y, kind, sk):
    """The program's test-channel metrics against sklearn.metrics on its own predictions."""
    preds = predict(args, work, model_dir, [path])
    if preds is None:
        return
    m = sk.metrics
    if kind == "binary":
        score = np.array([p["score"] for p in preds])
        label = np.array([p["predicted_label"] for p in preds])
        expect = {"binary_classification_accuracy": m.accuracy_score(y, label),
                  "precision": m.precision_score(y, label, zero_division=0),
                  "recall": m.recall_score(y, label, zero_division=0),
                  "binary_f_beta": m.fbeta_score(y, label, beta=1.0, zero_division=0),
                  "roc_auc_score": m.roc_auc_score(y, score)}
    elif kind == "multiclass":
        score = np.array([p["score"] for p in preds])
        label = np.array([p["predicted_label"] for p in preds])
        expect = {"multiclass_accuracy": m.accuracy_score(y, label),
                  "multiclass_top_k_accuracy": m.top_k_accuracy_score(y, score, k=3, labels=np.arange(score.shape[1])),
                  "macro_precision": m.precision_score(y, label, average="macro", zero_division=0),
                  "macro_recall": m.recall_score(y, label, average="macro", zero_division=0),
                  "macro_f_beta": m.fbeta_score(y, label, beta=1.0, average="macro", zero_division=0)}
    else:
        score = np.array([p["score"] for p in preds])
        expect = {"mse": m.mean_squared_error(y, score), "absolute_loss": m.mean_absolute_error(y, score)}
    worst = max(abs(metrics["test:" + k] - v) / max(1.0, abs(v)) for k, v in expect.items())
    check(worst < 1e-12, "%s: %d test metrics equal sklearn.metrics on the predictions (max relative diff %.1e)"
          % (name, len(expect), worst))
    return expect


def relative(a, b):
    return abs(a - b) / abs(b)


def check_sklearn(args, work):
    try:
        sys.path.insert(0, args.python_path)
        import sklearn.datasets
        import sklearn.linear_model
        import sklearn.metrics
        import sklearn.svm
        import sklearn as sk
    except ImportError as e:
        print("skipped: scikit-learn is not in %s (%s); scripts/lib/deps.sh's pipemode_fetch_python_reference"
              " puts it there" % (args.python_path, e))
        return False
    lm = sklearn.linear_model

    # Logistic loss on breast cancer: objective mean log-loss + wd/2 |w|^2.
    data = sklearn.datasets.load_breast_cancer()
    x, y = standardized(data.data), data.target.astype(np.float32)
    n, wd = x.shape[0], 1e-2
    path = os.path.join(work, "cancer.rec")
    rp.write_dense(path, x, labels=y)
    xd = x.astype(np.float64)

    def logistic_objective(w, b):
        z = xd @ w + b
        return np.mean(np.logaddexp(0, z) - y * z) + wd / 2 * w @ w

    hyper = {"predictor_type": "binary_classifier", "wd": wd, "num_models": 1, "learning_rate": 0.05,
             "mini_batch_size": 64, "epochs": 60, "use_lr_scheduler": "true", "lr_scheduler_step": 50,
             "lr_scheduler_factor": 0.7, "lr_scheduler_minimum_lr": 1e-7, "early_stopping_patience": 60,
             "binary_classifier_model_selection_criteria": "loss_function"}
    r = train(args, work, "cancer", [path], hyper, ["--validation", path, "--test", path])
    if r:
        model, metrics, _ = r
        w, b = weights(model)
        ref = lm.LogisticRegression(C=1 / (n * wd), tol=1e-10, max_iter=10000).fit(xd, y)
        ref_obj = logistic_objective(ref.coef_[0], ref.intercept_[0])
        obj = logistic_objective(w[:, 0], b[0])
        check(relative(obj, ref_obj) < 1e-3,
              "logistic, breast cancer: objective %.8f vs LogisticRegression's %.8f (relative %.1e < 1e-3; model %d)"
              % (obj, ref_obj, relative(obj, ref_obj), model["chosen_model"]))
        acc = metrics["test:binary_classification_accuracy"]
        ref_acc = ref.score(xd, y)
        check(abs(acc - ref_acc) <= 0.01, "logistic, breast cancer: accuracy %.4f vs %.4f (within one point)"
              % (acc, ref_acc))
        check_metrics(args, work, "logistic, breast cancer", os.path.join(work, "cancer"), path, metrics, y,
                      "binary", sk)
    # The threshold calibrated for accuracy, choosing among 4 models: the test accuracy (the
    # same data as the calibration's) is the best any threshold gives the chosen model's scores,
    # and no other model's best is higher.
    r = train(args, work, "cancer-threshold", [path],
              dict(hyper, num_models=4, binary_classifier_model_selection_criteria="accuracy"),
              ["--validation", path, "--test", path])
    if r:
        model, metrics, _ = r
        preds = predict(args, work, os.path.join(work, "cancer-threshold"), [path])
        p = np.array([q["score"] for q in preds])
        best = max(np.mean((p >= t) == (y > 0.5)) for t in np.append(p, np.inf))
        at = np.mean((p >= model["threshold"]) == (y > 0.5))
        check(abs(metrics["test:binary_classification_accuracy"] - best) < 1e-12 and abs(at - best) < 1e-12,
              "breast cancer, accuracy criterion over 4 models: threshold %.6f gives the best accuracy %.4f"
              % (model["threshold"], best))

    # normalize_data on the raw breast-cancer features: the scaler is the first 300 records'
    # mean and (population) std, and the accuracy is within one point of the standardized run;
    # with a tolerance of 5 % a loss that stops improving stops the run before its 200 epochs.
    raw_path = os.path.join(work, "cancer-raw.rec")
    raw = data.data.astype(np.float32)
    rp.write_dense(raw_path, raw, labels=y)
    r = train(args, work, "cancer-raw", [raw_path],
              dict(hyper, normalize_data="true", num_point_for_scaler=300, epochs=200, early_stopping_patience=2,
                   early_stopping_tolerance=0.05),
              ["--test", raw_path])
    if r:
        model, metrics, _ = r
        first = raw[:320].astype(np.float64)  # the scaler reads whole batches of 64: 320 records
        mean_err = np.abs(np.array(model["feature_mean"]) - first.mean(axis=0)).max() / np.abs(first).max()
        scale_err = np.abs(np.array(model["feature_scale"]) / first.std(axis=0) - 1).max()
        check(mean_err < 1e-9 and scale_err < 1e-6, "normalize_data: the scaler is the first batches' mean and std "
              "(relative errors %.1e, %.1e)" % (mean_err, scale_err))
        acc = metrics["test:binary_classification_accuracy"]
        check(abs(acc - ref.score(xd, y)) <= 0.01, "normalize_data, breast cancer: accuracy %.4f vs %.4f (within one point)"
              % (acc, ref.score(xd, y)))
        check(model["epochs"] < 200, "early stopping: stopped after %d of 200 epochs" % model["epochs"])

    # Squared loss on diabetes against Ridge: alpha = n wd (objective mean r^2/2 + wd/2 |w|^2).
    data = sklearn.datasets.load_diabetes()
    x, y = standardized(data.data), data.target.astype(np.float32)
    n, wd = x.shape[0], 1e-3
    path = os.path.join(work, "diabetes.rec")
    rp.write_dense(path, x, labels=y)
    ref = lm.Ridge(alpha=n * wd).fit(x.astype(np.float64), y)
    ref_mse = np.mean((ref.predict(x.astype(np.float64)) - y) ** 2)
    r = train(args, work, "diabetes", [path],
              {"predictor_type": "regressor", "wd": wd, "num_models": 1, "learning_rate": 0.05, "normalize_label": "true",
               "mini_batch_size": 32, "epochs": 60, "use_lr_scheduler": "true", "lr_scheduler_step": 100,
               "lr_scheduler_factor": 0.6, "lr_scheduler_minimum_lr": 1e-7, "early_stopping_patience": 60},
              ["--test", path])
    if r:
        mse = r[1]["test:mse"]
        check(relative(mse, ref_mse) < 0.01, "squared loss, diabetes: MSE %.4f vs Ridge's %.4f (relative %.1e < 1 %%)"
              % (mse, ref_mse, relative(mse, ref_mse)))
        check_metrics(args, work, "squared loss, diabetes", os.path.join(work, "diabetes"), path, r[1], y,
                      "regression", sk)

    # Softmax on digits, sparse records (pixels / 16, no scaling), against multinomial
    # LogisticRegression; held-out accuracy.
    data = sklearn.datasets.load_digits()
    x, y = (data.data / 16).astype(np.float32), data.target.astype(np.float32)
    train_rows = slice(0, 1400)
    test_rows = slice(1400, None)
    n, wd = 1400, 1e-3
    train_path, test_path = os.path.join(work, "digits-train.rec"), os.path.join(work, "digits-test.rec")
    rp.write_sparse(train_path, x[train_rows], labels=y[train_rows])
    rp.write_sparse(test_path, x[test_rows], labels=y[test_rows])
    ref = lm.LogisticRegression(C=1 / (n * wd), max_iter=5000, tol=1e-8).fit(x[train_rows].astype(np.float64),
                                                                              y[train_rows])
    ref_acc = ref.score(x[test_rows].astype(np.float64), y[test_rows])
    r = train(args, work, "digits", [train_path],
              {"predictor_type": "multiclass_classifier", "num_classes": 10, "wd": wd, "num_models": 1,
               "learning_rate": 0.05, "mini_batch_size": 100, "epochs": 40, "use_lr_scheduler": "true",
               "lr_scheduler_step": 100, "lr_scheduler_factor": 0.7, "early_stopping_patience": 40},
              ["--test", test_path])
    if r:
        acc = r[1]["test:multiclass_accuracy"]
        check(abs(acc - ref_acc) <= 0.01, "softmax, digits (sparse): held-out accuracy %.4f vs %.4f (within one point)"
              % (acc, ref_acc))
        check_metrics(args, work, "softmax, digits", os.path.join(work, "digits"), test_path, r[1], y[test_rows],
                      "multiclass", sk)

    # Hinge on breast cancer against LinearSVC (C = 1 / (n wd)); LinearSVC also penalizes its
    # intercept (intercept_scaling), so the objectives differ by that term's share.
    data = sklearn.datasets.load_breast_cancer()
    x, y = standardized(data.data), data.target.astype(np.float32)
    xd, n, wd = x.astype(np.float64), x.shape[0], 1e-2
    path = os.path.join(work, "cancer.rec")
    t = 2 * y - 1

    def hinge_objective(w, b):
        return np.mean(np.maximum(0, 1 - t * (xd @ w + b))) + wd / 2 * w @ w

    ref = sklearn.svm.LinearSVC(C=1 / (n * wd), loss="hinge", max_iter=200000, tol=1e-8,
                                intercept_scaling=100).fit(xd, y)
    ref_obj = hinge_objective(ref.coef_[0], ref.intercept_[0])
    r = train(args, work, "hinge", [path],
              {"predictor_type": "binary_classifier", "loss": "hinge_loss", "wd": wd, "num_models": 1,
               "learning_rate": 0.05, "mini_batch_size": 64, "epochs": 60, "use_lr_scheduler": "true",
               "lr_scheduler_step": 50, "lr_scheduler_factor": 0.7, "lr_scheduler_minimum_lr": 1e-6,
               "early_stopping_patience": 60})
    if r:
        w, b = weights(r[0])
        obj = hinge_objective(w[:, 0], b[0])
        check(relative(obj, ref_obj) < 0.01, "hinge, breast cancer: objective %.6f vs LinearSVC's %.6f (relative %.1e < 1e-2)"
              % (obj, ref_obj, relative(obj, ref_obj)))

    # Quantile (q = 0.8) and huber on diabetes with a normalized label.
    data = sklearn.datasets.load_diabetes()
    x, y = standardized(data.data), data.target.astype(np.float64)
    xd = x.astype(np.float64)
    ys = ((y - y.mean()) / y.std()).astype(np.float32)
    path = os.path.join(work, "diabetes-scaled.rec")
    rp.write_dense(path, x, labels=ys)
    ys = ys.astype(np.float64)
    q, l1 = 0.8, 1e-3

    def pinball(w, b):
        r = ys - (xd @ w + b)
        return np.mean(np.where(r >= 0, q * r, (q - 1) * r)) + l1 * np.abs(w).sum()

    ref = lm.QuantileRegressor(quantile=q, alpha=l1, solver="highs").fit(xd, ys)
    ref_obj = pinball(ref.coef_, ref.intercept_)
    r = train(args, work, "quantile", [path],
              {"predictor_type": "regressor", "loss": "quantile_loss", "quantile": q, "l1": l1, "num_models": 1,
               "optimizer": "adam", "learning_rate": 0.02, "mini_batch_size": 32, "epochs": 60,
               "use_lr_scheduler": "true", "lr_scheduler_step": 100, "lr_scheduler_factor": 0.6,
               "lr_scheduler_minimum_lr": 1e-7, "early_stopping_patience": 60})
    if r:
        w, b = weights(r[0])
        obj = pinball(w[:, 0], b[0])
        check(relative(obj, ref_obj) < 0.01, "quantile 0.8, diabetes: objective %.6f vs QuantileRegressor's %.6f "
              "(relative %.1e < 1e-2)" % (obj, ref_obj, relative(obj, ref_obj)))

    delta, wd = 1.0, 1e-3

    def huber(w, b):
        r = np.abs(ys - (xd @ w + b))
        return np.mean(np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta))) + wd / 2 * w @ w

    ref = lm.SGDRegressor(loss="huber", epsilon=delta, alpha=wd, penalty="l2", max_iter=5000, tol=1e-10,
                          learning_rate="invscaling", eta0=0.01, random_state=0).fit(xd, ys)
    ref_obj = huber(ref.coef_, ref.intercept_[0])
    r = train(args, work, "huber", [path],
              {"predictor_type": "regressor", "loss": "huber_loss", "huber_delta": delta, "wd": wd, "num_models": 1,
               "learning_rate": 0.02, "mini_batch_size": 32, "epochs": 60, "use_lr_scheduler": "true",
               "lr_scheduler_step": 100, "lr_scheduler_factor": 0.6, "lr_scheduler_minimum_lr": 1e-7,
               "early_stopping_patience": 60})
    if r:
        w, b = weights(r[0])
        obj = huber(w[:, 0], b[0])
        check(obj <= ref_obj * 1.01, "huber, diabetes: objective %.6f vs SGDRegressor's %.6f (at most 1 %% above)"
              % (obj, ref_obj))


def check_mpi(args, work):
    """3 ranks against 1 on breast cancer in 3 files: the same final objective within 1e-3."""
    import importlib
    sys.path.insert(0, args.python_path)
    try:
        datasets = importlib.import_module("sklearn.datasets")
    except ImportError:
        print("skipped: the MPI check uses scikit-learn's breast-cancer data")
        return
    data = datasets.load_breast_cancer()
    x, y = standardized(data.data), data.target.astype(np.float32)
    paths = rp.write_parts(os.path.join(work, "cancer-parts"), x, 3, labels=y)
    hyper = {"predictor_type": "binary_classifier", "wd": 1e-2, "num_models": 1, "learning_rate": 0.05,
             "mini_batch_size": 63, "epochs": 60, "use_lr_scheduler": "true", "lr_scheduler_step": 50,
             "lr_scheduler_factor": 0.7, "lr_scheduler_minimum_lr": 1e-7, "early_stopping_patience": 60}
    xd = x.astype(np.float64)

    def objective(model):
        w, b = weights(model)
        z = xd @ w[:, 0] + b[0]
        return np.mean(np.logaddexp(0, z) - y * z) + 1e-2 / 2 * w[:, 0] @ w[:, 0]

    one = train(args, work, "mpi-1", paths, hyper)
    three = train(args, work, "mpi-3", paths, hyper, mpi=3)
    if one and three:
        a, b = objective(one[0]), objective(three[0])
        check(relative(b, a) < 1e-3, "3 MPI ranks vs 1: objective %.8f vs %.8f (relative %.1e < 1e-3)"
              % (b, a, relative(b, a)))
        check(one[0]["records"] == three[0]["records"] == x.shape[0], "3 MPI ranks vs 1: every record once an epoch")


def check_pipe_mode(args, work):
    """--pipe-mode as SageMaker lays it out: a train FIFO an epoch, and a validation FIFO a pass
    over the channel (one an epoch, two to choose a model and calibrate its threshold, one for
    the final metrics), then test_0: the same model.json and metrics.json as from files, and
    every FIFO read, no more."""
    rng = np.random.default_rng(11)
    n, d, epochs = 600, 7, 3
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x.astype(np.float64) @ rng.normal(size=d) + 0.5 * rng.normal(size=n) > 0).astype(np.float32)
    train_path, valid_path = os.path.join(work, "pipe-train.rec"), os.path.join(work, "pipe-valid.rec")
    rp.write_dense(train_path, x[:450], labels=y[:450])
    rp.write_dense(valid_path, x[450:], labels=y[450:])
    hyper = {"predictor_type": "binary_classifier", "num_models": 4, "epochs": epochs, "mini_batch_size": 50,
             "early_stopping_patience": epochs, "binary_classifier_model_selection_criteria": "accuracy"}
    files = train(args, work, "pipe-files", [train_path], hyper, ["--validation", valid_path, "--test", valid_path])

    root = os.path.join(work, "pipe-sagemaker")
    os.makedirs(os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "config"))
    with open(os.path.join(root, "config", "inputdataconfig.json"), "w") as f:
        json.dump({c: {"TrainingInputMode": "Pipe"} for c in ("train", "validation", "test")}, f)
    fifos = [("train_%d" % e, train_path) for e in range(epochs)]
    fifos += [("validation_%d" % i, valid_path) for i in range(epochs + 3)] + [("test_0", valid_path)]
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
    pipe = train(args, work, "pipe-mode", [], hyper, ["--pipe-mode", "--data-dir", os.path.join(root, "data")])
    try:
        feeder.wait(timeout=10)
        all_read = True
    except subprocess.TimeoutExpired:
        feeder.kill()
        feeder.wait()
        all_read = False
    check(all_read, "--pipe-mode: every FIFO (%d train, %d validation, test_0) was read" % (epochs, epochs + 3))
    if files and pipe:
        check(pipe[0] == files[0] and pipe[1] == files[1],
              "--pipe-mode: the same model.json and metrics.json as --validation and --test files")


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
        check_one_epoch(args, args.work)
        check_pipe_mode(args, args.work)
        check_sklearn(args, args.work)
    print("%d failure(s) in %.1f s" % (len(failures), time.monotonic() - start))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
