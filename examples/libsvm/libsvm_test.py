#!/usr/bin/python3
"""pipemode-libsvm-stats against scikit-learn's load_svmlight_file, the reference parser.

Writes LIBSVM files with a seeded generator (sparse rows of varied length, labels of several
kinds, rows with only a label, the largest index, scientific notation, '+' signs, explicit
zeros, qid fields, comments, blank lines, tabs, trailing blanks, CRLF line ends, a last line
without a newline), reads them with the program (one-based, and a zero-based file with
--zero-based) and with scikit-learn, and compares rows, stored entries and the label histogram
exactly and every feature's sum within float32 rounding. A malformed file must be refused by
both, the program naming the line and the column.

Usage: libsvm_test.py --program PATH --work DIR --python-path DIR
Exit status 0 when every check passes, 1 otherwise, 77 (CTest's skip) without scikit-learn
(scripts/lib/deps.sh, pipemode_fetch_python_reference, puts it in the build tree's
python-reference directory, since Debian's python3-sklearn cannot be installed beside Boost 1.81).
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--program", required=True)
parser.add_argument("--work", required=True)
parser.add_argument("--python-path", required=True)
args = parser.parse_args()

sys.path.insert(0, args.python_path)
try:
    import numpy as np
    from sklearn.datasets import load_svmlight_files
except ImportError as e:
    print(f"skipped: scikit-learn or NumPy cannot be imported ({e}); run scripts/test.sh, or "
          f"source scripts/lib/deps.sh and call pipemode_fetch_python_reference <build>/python-reference")
    sys.exit(77)

FEATURES = 1000
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)


def value_text(rng):
    """A value in one of the spellings LIBSVM writers use."""
    kind = rng.randrange(7)
    v = rng.uniform(-100, 100)
    if kind == 0:
        return "%g" % v
    if kind == 1:
        return "%.6e" % (v * 1e-20)  # scientific notation, tiny
    if kind == 2:
        return "%.3E" % (v * 1e15)
    if kind == 3:
        return str(rng.randrange(-5, 6))  # whole numbers, explicit zeros among them
    if kind == 4:
        return "+%.4f" % abs(v)
    if kind == 5:
        return "0"
    return repr(v)


def make_file(path, rng, rows, base, newline_at_end=True):
    labels = ["-1", "0", "1", "2.5", "3e-2", "1e3", "+1", "7"]
    lines = []
    for r in range(rows):
        if rng.random() < 0.03:
            lines.append(rng.choice(["# a comment line", "", "   \t"]))
            continue
        fields = [rng.choice(labels)]
        if rng.random() < 0.1:
            fields.append("qid:%d" % rng.randrange(100))
        n = 0 if rng.random() < 0.08 else rng.randrange(1, 40)
        indices = sorted(rng.sample(range(FEATURES), n))
        if rng.random() < 0.05:
            indices = sorted(set(indices) | {FEATURES - 1})  # the largest column
        fields += ["%d:%s" % (i + base, value_text(rng)) for i in indices]
        line = rng.choice([" ", "\t"]).join(fields) if rng.random() < 0.2 else " ".join(fields)
        if rng.random() < 0.1:
            line += rng.choice(["  ", "\t", " # trailing comment"])
        if rng.random() < 0.05:
            line += "\r"
        lines.append(line)
    text = "\n".join(lines) + ("\n" if newline_at_end else "")
    with open(path, "w") as f:
        f.write(text)


def run_program(files, *extra):
    p = subprocess.run([args.program, "--features", str(FEATURES), *extra, *files],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr)
    check(p.returncode == 0, "pipemode-libsvm-stats exited with %d" % p.returncode)
    return json.loads(p.stdout) if p.returncode == 0 else None


def compare(name, got, files, zero_based):
    if got is None:
        return
    loaded = load_svmlight_files(files, n_features=FEATURES, dtype=np.float32, zero_based=zero_based)
    xs, ys = loaded[0::2], loaded[1::2]
    rows = sum(x.shape[0] for x in xs)
    nnz = sum(x.nnz for x in xs)
    check(got["rows"] == rows, "%s: rows %d, scikit-learn %d" % (name, got["rows"], rows))
    check(got["nnz"] == nnz, "%s: stored entries %d, scikit-learn %d" % (name, got["nnz"], nnz))
    check(got["bad_records"] == 0, "%s: %d bad records" % (name, got["bad_records"]))
    labels = {}
    for y in ys:
        for v in y:
            key = "%.9g" % float(np.float32(v))
            labels[key] = labels.get(key, 0) + 1
    check(got["labels"] == labels, "%s: labels %s, scikit-learn %s" % (name, got["labels"], labels))
    sums = np.zeros(FEATURES)
    scale = np.zeros(FEATURES)
    for x in xs:
        x64 = x.astype(np.float64)
        sums += np.asarray(x64.sum(axis=0)).ravel()
        scale += np.asarray(abs(x64).sum(axis=0)).ravel()
    mine = np.array(got["feature_sums"], dtype=np.float64)
    check(mine.shape == sums.shape, "%s: %d sums for %d features" % (name, mine.size, FEATURES))
    if mine.shape == sums.shape:
        # Both sides hold float32 values and add them in float64; a value may differ by one
        # float32 rounding (scikit-learn parses to double and then narrows).
        err = np.abs(mine - sums)
        bound = 1e-6 * scale + 1e-300
        worst = int(np.argmax(err / bound))
        check(bool(np.all(err <= bound)),
              "%s: feature %d sums to %r, scikit-learn %r" % (name, worst, mine[worst], sums[worst]))
    print("%s: %d rows, %d stored entries, %d labels, %d feature sums compared" %
          (name, rows, nnz, len(labels), FEATURES))


shutil.rmtree(args.work, ignore_errors=True)
os.makedirs(args.work)
rng = random.Random(20240613)

one_based = []
for k, rows in enumerate([1500, 7, 2300]):
    path = os.path.join(args.work, "part-%d.svm" % k)
    make_file(path, rng, rows, base=1, newline_at_end=(k != 2))
    one_based.append(path)
compare("one-based, three files", run_program(one_based), one_based, zero_based=False)
compare("one-based, batches of 7", run_program(one_based, "--batch-size", "7", "--read-size", "4K"),
        one_based, zero_based=False)

zero = os.path.join(args.work, "zero.svm")
make_file(zero, rng, 800, base=0)
with open(zero, "a") as f:
    f.write("1 0:1.5 %d:2\n" % (FEATURES - 1))  # index 0 present for certain
compare("zero-based", run_program([zero], "--zero-based"), [zero], zero_based=True)

# A malformed line: both refuse the file; the program names the line and the column.
bad = os.path.join(args.work, "bad.svm")
with open(bad, "w") as f:
    f.write("1 1:1\n2 5:1 3:1\n")
p = subprocess.run([args.program, "--features", str(FEATURES), bad], capture_output=True, text=True)
check(p.returncode == 1, "a descending index: exit %d, expected 1" % p.returncode)
check("record 1" in p.stderr and "column 3 ('3:1')" in p.stderr,
      "a descending index: the message names the line and column: %r" % p.stderr)
try:
    load_svmlight_files([bad], n_features=FEATURES, zero_based=False)
    check(False, "scikit-learn accepted descending indices")
except ValueError:
    pass

if failures:
    print("%d checks failed" % len(failures))
    sys.exit(1)
print("all checks passed")
