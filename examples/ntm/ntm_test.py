"""Reference checks of pipemode-ntm (run by CTest; see examples/common/training_example.cmake).

Writes bag-of-words documents as RecordIO-protobuf (sparse float32 counts, by
examples/common/recordio_protobuf.py), runs the program on them and checks:
- for a fixed batch, fixed noise and fixed weights, the loss and every gradient the program
  computes (its hidden --debug_gradients hook) equal PyTorch's autograd of the model as
  docs/algorithms.md writes it, to 1e-6 (float64), for each activation, with and without
  batch_norm (skipped with a message when `import torch` fails);
- on documents drawn from the "bars" topics (25 words on a 5x5 grid, 10 topics), the validation
  perplexity falls over the epochs, and the topics recovered (matched by
  scipy.optimize.linear_sum_assignment) are nearer the true ones than random topics are; their
  mean L1 distance is reported beside scikit-learn's LatentDirichletAllocation on the same
  documents (from --python-path; skipped without it);
- with a high tolerance, early stopping ends the training after num_patience_epochs epochs
  without improvement; validation:total_loss equals NumPy's loss of the written model;
- --predict writes softmax(mu) of NumPy's forward pass of the written model;
- with --mpirun, 3 ranks whose batches together make the single process's batches train the
  same model as that process, to 1e-9.

Usage: /usr/bin/python3 ntm_test.py --program PROGRAM --work DIR [--python-path DIR] [--mpirun MPIRUN]
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


def epoch_metrics(stdout, name):
    """The values of `#metric <name>=<value> epoch=<E>` lines, in epoch order."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("#metric " + name + "=") and "epoch=" in line:
            out.append(float(line.split()[1].split("=", 1)[1]))
    return out


# --- the model in NumPy (forward only) -------------------------------------------------------


def parameter_names(layers, batch_norm):
    names = []
    for l in range(1, layers + 1):
        names += ["encoder_W%d" % l, "encoder_c%d" % l]
        if batch_norm:
            names += ["bn_gamma%d" % l, "bn_beta%d" % l, "bn_mean%d" % l, "bn_var%d" % l]
    return names + ["mu_W", "mu_b", "logvar_W", "logvar_b", "topics", "decoder_b"]


def numpy_forward(model, counts):
    """mu, log-variance and the logits' pieces at inference (running statistics)."""
    a = np.log1p(counts)
    act = {"sigmoid": lambda q: 1 / (1 + np.exp(-q)), "tanh": np.tanh, "relu": lambda q: np.maximum(q, 0)}[
        model["encoder_layers_activation"]]
    for l in range(1, len(model["encoder_layers"]) + 1):
        q = a @ np.array(model["encoder_W%d" % l]).T + np.array(model["encoder_c%d" % l])
        if model["batch_norm"]:
            q = (q - np.array(model["bn_mean%d" % l])) / np.sqrt(np.array(model["bn_var%d" % l]) + 1e-5)
            q = q * np.array(model["bn_gamma%d" % l]) + np.array(model["bn_beta%d" % l])
        a = act(q)
    mu = a @ np.array(model["mu_W"]).T + np.array(model["mu_b"])
    lv = a @ np.array(model["logvar_W"]).T + np.array(model["logvar_b"])
    return mu, lv


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def numpy_loss(model, counts):
    """Per-document loss at z = mu (what the validation metric uses)."""
    mu, lv = numpy_forward(model, counts)
    logits = softmax(mu) @ np.array(model["topics"]).T + np.array(model["decoder_b"])
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -(counts * logp).sum(axis=1) + 0.5 * (mu ** 2 + np.exp(lv) - 1 - lv).sum(axis=1)


def topics_of(model):
    """Topic j's word distribution: softmax(B e_j + d)."""
    b, d = np.array(model["topics"]), np.array(model["decoder_b"])
    return softmax((b + d[:, None]).T)


# --- data ------------------------------------------------------------------------------------


def bars(size=5):
    """The bars topics: each row and each column of a size x size grid of words, uniform."""
    topics = []
    for i in range(size):
        t = np.zeros((size, size))
        t[i, :] = 1
        topics.append(t.ravel() / size)
    for j in range(size):
        t = np.zeros((size, size))
        t[:, j] = 1
        topics.append(t.ravel() / size)
    return np.array(topics)


def documents(topics, n, length, alpha, rng):
    theta = rng.dirichlet(np.full(len(topics), alpha), size=n)
    return np.array([rng.multinomial(length, p) for p in theta @ topics], dtype=float)


def matched_l1(found, truth):
    """Mean L1 distance between the true topics and the found ones after optimal matching."""
    from scipy.optimize import linear_sum_assignment
    cost = np.abs(truth[:, None, :] - found[None, :, :]).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


# --- PyTorch ---------------------------------------------------------------------------------


def torch_check(prog, work, rng):
    try:
        import torch
    except ImportError as e:
        print("skipped: PyTorch does not import for %s (%s; Debian: python3-torch): the gradient checks" % (
            sys.executable, e))
        return
    torch.set_default_dtype(torch.float64)
    acts = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
    v, k, n = 12, 3, 9
    cases = [("sigmoid", [6, 5], True), ("tanh", [6, 5], False), ("relu", [7], True), ("relu", [5, 4], False)]
    counts = rng.poisson(1.2, size=(n, v)).astype(float)
    counts[0] = 0  # an empty document
    counts[0, 3] = 1
    data = os.path.join(work, "grad_docs")
    paths = rp.write_parts(data, counts.astype(np.float32), 1, sparse=True)
    for act, layers, bn in cases:
        what = "%s, layers %s, batch_norm %s" % (act, ",".join(map(str, layers)), bn)
        model = {"algorithm": "ntm", "format_version": 1, "feature_dim": v, "num_topics": k, "encoder_layers": layers,
                 "encoder_layers_activation": act, "batch_norm": bn, "input_transform": "log1p"}
        sizes = [v] + layers
        for l in range(1, len(layers) + 1):
            model["encoder_W%d" % l] = rng.normal(scale=0.5, size=(sizes[l], sizes[l - 1])).tolist()
            model["encoder_c%d" % l] = rng.normal(scale=0.3, size=sizes[l]).tolist()
            if bn:
                model["bn_gamma%d" % l] = (1 + 0.3 * rng.normal(size=sizes[l])).tolist()
                model["bn_beta%d" % l] = (0.3 * rng.normal(size=sizes[l])).tolist()
                model["bn_mean%d" % l] = np.zeros(sizes[l]).tolist()
                model["bn_var%d" % l] = np.ones(sizes[l]).tolist()
        model["mu_W"] = rng.normal(scale=0.5, size=(k, sizes[-1])).tolist()
        model["mu_b"] = rng.normal(scale=0.3, size=k).tolist()
        model["logvar_W"] = rng.normal(scale=0.3, size=(k, sizes[-1])).tolist()
        model["logvar_b"] = rng.normal(scale=0.3, size=k).tolist()
        model["topics"] = rng.normal(size=(v, k)).tolist()
        model["decoder_b"] = rng.normal(scale=0.3, size=v).tolist()
        eps = rng.normal(size=(n, k))
        tag = "%s_%d_%s" % (act, len(layers), bn)
        model_path, eps_path, out_path = (os.path.join(work, "grad_%s_%s.json" % (tag, x)) for x in ("model", "eps", "out"))
        with open(model_path, "w") as f:
            json.dump(model, f)
        with open(eps_path, "w") as f:
            json.dump({"eps": eps.tolist()}, f)
        if run([prog, "--quiet", "--num_topics", str(k), "--mini_batch_size", "100", "--initial_model", model_path,
                "--debug_noise", eps_path, "--debug_gradients", out_path] + paths) is None:
            continue
        got = load_json(out_path)

        # The documented model in PyTorch, differentiated by autograd.
        names = [p for p in parameter_names(len(layers), bn) if not p.startswith(("bn_mean", "bn_var"))]
        t = {p: torch.tensor(model[p], requires_grad=True) for p in names}
        x = torch.tensor(counts)
        a = torch.log1p(x)
        for l in range(1, len(layers) + 1):
            q = a @ t["encoder_W%d" % l].T + t["encoder_c%d" % l]
            if bn:
                mean = q.mean(dim=0)
                var = ((q - mean) ** 2).mean(dim=0)
                q = (q - mean) / torch.sqrt(var + 1e-5) * t["bn_gamma%d" % l] + t["bn_beta%d" % l]
            a = acts[act](q)
        mu = a @ t["mu_W"].T + t["mu_b"]
        lv = a @ t["logvar_W"].T + t["logvar_b"]
        z = mu + torch.exp(lv / 2) * torch.tensor(eps)
        theta = torch.softmax(z, dim=1)
        logp = torch.log_softmax(theta @ t["topics"].T + t["decoder_b"], dim=1)
        loss = (-(x * logp).sum(dim=1) + 0.5 * (mu ** 2 + torch.exp(lv) - 1 - lv).sum(dim=1)).mean()
        loss.backward()

        loss_err = abs(got["loss"] - loss.item()) / max(1.0, abs(loss.item()))
        grad_err = max(float(np.max(np.abs(np.array(got[p]) - t[p].grad.numpy())))
                       / max(1.0, float(t[p].grad.abs().max())) for p in names)
        check(got["docs"] == n and loss_err <= 1e-6 and grad_err <= 1e-6,
              "%s: loss %.6f and %d gradients equal PyTorch's autograd (relative error %.1e, %.1e)"
              % (what, loss.item(), len(names), loss_err, grad_err))


# --- main ------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--python-path", default="")
    ap.add_argument("--mpirun")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    prog = args.program
    w = lambda *p: os.path.join(args.work, *p)  # noqa: E731
    rng = np.random.default_rng(16)
    truth = bars()

    if args.mpirun:
        # 3 ranks each read one file of 40 documents in batches of 20 (mini_batch_size 60 over
        # 3 ranks), so global batch t is the three files' t-th 20 documents. The single process
        # reads the same documents rearranged so that its batches of 60 are those unions; the
        # noise and sub-sampling draws come from each document's content, so both see the same.
        parts = [documents(truth, 40, 30, 0.3, rng) for _ in range(3)]
        paths = [rp.write_parts(w("mpi_part%d" % r), parts[r].astype(np.float32), 1, sparse=True)[0] for r in range(3)]
        union = np.concatenate([np.concatenate([p[20 * t:20 * t + 20] for p in parts]) for t in range(2)])
        single = rp.write_parts(w("mpi_single"), union.astype(np.float32), 1, sparse=True)
        opts = ["--quiet", "--num_topics", "4", "--encoder_layers", "8,6", "--optimizer", "adam", "--learning_rate",
                "0.02", "--mini_batch_size", "60", "--epochs", "4", "--sub_sample", "0.8", "--clip_gradient", "5"]
        mpirun = [args.mpirun, "--allow-run-as-root", "--oversubscribe", "-np", "3"]
        t1 = run([prog] + opts + ["--model-dir", w("mpi_1")] + single)
        out1 = last_stdout[0]
        t3 = run(mpirun + [prog] + opts + ["--model-dir", w("mpi_3")] + paths)
        if t1 is not None and t3 is not None:
            check("ranks: 3" in last_stdout[0], "the program ran as 3 MPI ranks")
            m1, m3 = load_json(w("mpi_1", "model.json")), load_json(w("mpi_3", "model.json"))
            names = parameter_names(2, False)
            err = max(float(np.max(np.abs(np.array(m1[p]) - np.array(m3[p])))) for p in names)
            l1, l3 = epoch_metrics(out1, "train:total_loss"), epoch_metrics(last_stdout[0], "train:total_loss")
            loss_err = max(abs(a - b) / abs(a) for a, b in zip(l1, l3)) if len(l1) == len(l3) == 4 else 1.0
            check(err <= 1e-9 and loss_err <= 1e-9 and l1 and l1[-1] < l1[0],
                  "3 ranks, sub_sample 0.8, 4 epochs of adam: the model equals 1 process's over the union batches "
                  "(max difference %.1e; train:total_loss per epoch relative %.1e; %.2f s against %.2f s)"
                  % (err, loss_err, t3, t1))
        return

    # its own generator, so that the bars data are the same whether PyTorch is there or not
    torch_check(prog, args.work, np.random.default_rng(17))

    # The bars: 1500 training documents of 40 words, each from a Dirichlet(0.2) mix of the 10 bars.
    train = documents(truth, 1500, 40, 0.2, rng)
    valid = documents(truth, 300, 40, 0.2, rng)
    test = documents(truth, 300, 40, 0.2, rng)
    train_paths = rp.write_parts(w("bars_train"), train.astype(np.float32), 4, sparse=True)
    valid_path = rp.write_parts(w("bars_valid"), valid.astype(np.float32), 1, sparse=True)[0]
    test_path = rp.write_parts(w("bars_test"), test.astype(np.float32), 1, sparse=True)[0]
    epochs = 40
    seconds = run([prog, "--quiet", "--num_topics", "10", "--encoder_layers", "50", "--optimizer", "adam",
                   "--learning_rate", "0.02", "--mini_batch_size", "50", "--epochs", str(epochs),
                   "--num_patience_epochs", str(epochs), "--model-dir", w("bars"), "--validation", valid_path,
                   "--test", test_path] + train_paths)
    if seconds is not None:
        stdout = last_stdout[0]
        perplexity = epoch_metrics(stdout, "validation:perplexity")
        # It falls every epoch at first, then levels off near 17 with the noise of adam's steps.
        falls = sum(b < a for a, b in zip(perplexity, perplexity[1:]))
        first = all(b < a for a, b in zip(perplexity[:8], perplexity[1:8]))
        check(len(perplexity) == epochs and first and perplexity[-1] < 0.8 * perplexity[0],
              "bars: validation:perplexity falls over %d epochs, %.2f -> %.2f (in each of the first 8, in %d of "
              "%d in all; %.2f s)" % (len(perplexity), perplexity[0] if perplexity else 0,
                                     perplexity[-1] if perplexity else 0, falls, epochs - 1, seconds))
        model = load_json(w("bars", "model.json"))
        metrics = load_json(w("bars", "metrics.json"))
        expected = float(np.mean(numpy_loss(model, test)))
        check(abs(metrics["test:total_loss"] - expected) <= 1e-9 * expected
              and abs(metrics["test:perplexity"] - np.exp(numpy_loss(model, test).sum() / test.sum()))
              <= 1e-9 * metrics["test:perplexity"],
              "bars: test:total_loss %.4f and test:perplexity %.4f equal NumPy's of the written model"
              % (metrics["test:total_loss"], metrics["test:perplexity"]))
        try:
            if args.python_path:
                sys.path.insert(0, args.python_path)
            import scipy.optimize  # noqa: F401
            have_scipy = True
        except ImportError as e:
            print("skipped: SciPy does not import from %r (%s): topic recovery is not measured; "
                  "pipemode_fetch_python_reference in scripts/lib/deps.sh puts it there" % (args.python_path, e))
            have_scipy = False
        if have_scipy:
            ntm_l1 = matched_l1(topics_of(model), truth)
            random_l1 = float(np.mean([matched_l1(rng.dirichlet(np.ones(25), size=10), truth) for _ in range(5)]))
            note = ""
            try:
                from sklearn.decomposition import LatentDirichletAllocation
                start = time.monotonic()
                # Few iterations: its E-step loops over the documents in Python, about 0.5 s an
                # iteration here on a loaded machine.
                lda = LatentDirichletAllocation(n_components=10, learning_method="batch", max_iter=10,
                                                max_doc_update_iter=10, random_state=0).fit(train)
                lda_topics = lda.components_ / lda.components_.sum(axis=1, keepdims=True)
                note = "; scikit-learn's LDA %.3f (%.1f s)" % (matched_l1(lda_topics, truth), time.monotonic() - start)
            except ImportError as e:
                note = "; scikit-learn's LDA skipped (%s)" % e
            check(ntm_l1 < random_l1,
                  "bars: recovered topics' mean L1 distance %.3f, below random topics' %.3f%s"
                  % (ntm_l1, random_l1, note))

    # Early stopping on a plateau: with tolerance 0.5 no epoch improves enough after the first,
    # so it stops after 1 + num_patience_epochs epochs; batch_norm on.
    out = w("early")
    if run([prog, "--quiet", "--num_topics", "10", "--encoder_layers", "20", "--batch_norm", "true",
            "--optimizer", "rmsprop", "--learning_rate", "0.005", "--mini_batch_size", "200", "--epochs", "30",
            "--num_patience_epochs", "2", "--tolerance", "0.5", "--model-dir", out, "--validation", valid_path]
           + train_paths) is not None:
        stdout = last_stdout[0]
        model = load_json(os.path.join(out, "model.json"))
        losses = epoch_metrics(stdout, "validation:total_loss")
        check(model["epochs_run"] == 3 and len(losses) == 3 and "stopped early" in stdout,
              "tolerance 0.5, patience 2: stopped after %d epochs of 30" % model["epochs_run"])
        expected = float(np.mean(numpy_loss(model, valid)))
        got = load_json(os.path.join(out, "metrics.json"))["validation:total_loss"]
        check(abs(got - expected) <= 1e-9 * expected and losses and losses[-1] == got,
              "validation:total_loss %.6f equals NumPy's loss at z = mu of the written model (batch_norm's running "
              "statistics)" % got)
        predictions = w("predictions.jsonl")
        if run([prog, "--predict", os.path.join(out, "model.json"), "--output", predictions, test_path]) is not None:
            with open(predictions) as f:
                weights = np.array([json.loads(line)["topic_weights"] for line in f])
            expected = softmax(numpy_forward(model, test)[0])
            check(weights.shape == expected.shape and np.max(np.abs(weights - expected)) <= 1e-12,
                  "--predict: %d documents' topic_weights equal softmax(mu) of NumPy's forward pass" % len(expected))

    # Usage errors.
    p = subprocess.run([prog, "--model-dir", w("x"), train_paths[0]], capture_output=True, text=True)
    check(p.returncode == 2 and "num_topics is required" in p.stderr, "no num_topics: usage error")
    p = subprocess.run([prog, "--num_topics", "3", "--optimizer", "lbfgs", train_paths[0]], capture_output=True, text=True)
    check(p.returncode == 2 and "adadelta, adam, sgd, rmsprop or adagrad" in p.stderr, "a wrong optimizer: usage error")


if __name__ == "__main__":
    main()
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all checks passed")
