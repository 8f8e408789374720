"""Selective Steering as its authors' code computes it (knoveleng/steering), ported to NumPy and
scikit-learn, for tests/tests/ports.rs. Each function names the function it follows:

- steering/direction/calculator.py  FeatureDirectionCalculator._diff_in_means, select_best_direction
- steering/plane/constructor.py     SteeringPlaneConstructor.construct_plane (sklearn PCA)
- steering/steering/operator.py     SelectiveSteeringOperator.compute_layer_steering_mask,
                                    _filter_by_index, _precompute_rotation_matrix, steer_activation

stdin: {"sites": {name: {"pos": [[...]], "neg": [[...]]}, ...} in module order,
        "probe": [[...]], "theta": degrees}
stdout: {"b1", "b2", "best", "mask": {name: bool}, "steered": [[...]]}
"""
import json
import math
import re
import sys
from collections import defaultdict

import numpy as np
from sklearn.decomposition import PCA


def diff_in_means(pos, neg):
    out = {}
    for name in pos:
        d = pos[name].mean(axis=0) - neg[name].mean(axis=0)
        out[name] = d / (np.linalg.norm(d) + 1e-8)
    return out


def select_best_direction(candidates):
    names = list(candidates)
    sims = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            va, vb = candidates[a], candidates[b]
            # F.cosine_similarity: x.y / max(|x| |y|, eps)
            sims[i, j] = va @ vb / max(np.linalg.norm(va) * np.linalg.norm(vb), 1e-8)
    best = int(np.argmax(sims.mean(axis=1)))
    return candidates[names[best]], names[best]


def construct_plane(feature, candidates):
    pca = PCA(n_components=1)
    pca.fit(np.stack(list(candidates.values())))
    pc0 = pca.components_[0]
    b1 = feature / (np.linalg.norm(feature) + 1e-8)
    b2 = pc0 - (pc0 @ b1) * b1
    b2 = b2 / (np.linalg.norm(b2) + 1e-8)
    return b1, b2


def filter_by_index(mask):
    groups = defaultdict(list)
    for name, ok in mask.items():
        m = re.search(r"\.(\d+)\.", name)
        if m:
            groups[m.group(1)].append(ok)
    valid = {i for i, oks in groups.items() if all(oks)}
    out = {}
    for name in mask:
        m = re.search(r"\.(\d+)\.", name)
        out[name] = bool(m and m.group(1) in valid)
    return out


def layer_mask(pos, neg, feature):
    f = feature / (np.linalg.norm(feature) + 1e-8)
    mask = {}
    for name in pos:
        p = pos[name] / (np.linalg.norm(pos[name], axis=-1, keepdims=True) + 1e-8)
        n = neg[name] / (np.linalg.norm(neg[name], axis=-1, keepdims=True) + 1e-8)
        mask[name] = bool((p @ f).mean() * (n @ f).mean() < 0)
    return filter_by_index(mask)


def steer(h, b1, b2, theta_deg):
    t = math.radians(theta_deg)
    P = np.outer(b1, b1) + np.outer(b2, b2)
    V = math.cos(t) * P + math.sin(t) * (np.outer(b2, b1) - np.outer(b1, b2))
    return h - h @ P.T + h @ V.T


def main():
    req = json.load(sys.stdin)
    pos = {k: np.asarray(v["pos"], dtype=np.float64) for k, v in req["sites"].items()}
    neg = {k: np.asarray(v["neg"], dtype=np.float64) for k, v in req["sites"].items()}
    cands = diff_in_means(pos, neg)
    feature, best = select_best_direction(cands)
    b1, b2 = construct_plane(feature, cands)
    mask = layer_mask(pos, neg, feature)
    steered = steer(np.asarray(req["probe"], dtype=np.float64), b1, b2, req["theta"])
    json.dump({"b1": b1.tolist(), "b2": b2.tolist(), "best": best, "mask": mask,
               "steered": steered.tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
