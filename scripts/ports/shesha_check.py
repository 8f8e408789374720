"""Geometric stability from the shesha-geometry package itself, for tests/tests/ports.rs:
supervised_alignment as the package computes it, feature_split on the partitions Tiller drew
(scored with the package's own RDM-pair scorer), and feature_split with the package's own
random partitions (a Monte Carlo estimate of the same quantity).

stdin: {"layers": [{"x": [[...]], "y": [0/1...], "partitions": [[[...], [...]], ...]}]}
stdout: {"layers": [{"alignment": .., "feature_split_same": .., "feature_split_own": ..}]}
"""
import json
import sys

import numpy as np
import shesha
from scipy.spatial.distance import pdist
from shesha.core import _score_rdm_pair


def main():
    r = json.load(sys.stdin)
    out = []
    for layer in r["layers"]:
        X = np.asarray(layer["x"], dtype=np.float64)
        y = np.asarray(layer["y"])
        Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        same = []
        for a, b in layer["partitions"]:
            s, _ = _score_rdm_pair(pdist(Xn[:, a], metric="cosine"), pdist(Xn[:, b], metric="cosine"), "raise")
            if s is not None:
                same.append(s)
        out.append({
            "alignment": float(shesha.supervised_alignment(X, y)),
            "feature_split_same": float(np.mean(same)),
            "feature_split_own": float(shesha.feature_split(X, n_splits=200, seed=0)),
        })
    json.dump({"layers": out}, sys.stdout)


if __name__ == "__main__":
    main()
