"""Learning from labels that say what an image is NOT, without any model that saw clean labels.

In a complementary labelling every image is filed under a class it is not. A model trained on
those labels learns them (confident learning's blind spot), and on a small set it learns little
else: each label rules out one class of C, log2(C/(C-1)) bits instead of log2(C). What the labels
still carry is their AVOIDANCE: the images of one true class sit in every folder but their own.

So the structure comes from the images and the class from the labels:
1. images -> features (blurred, centred, unit-norm pixels: handwriting of one character is
   closer to itself than to others; leave-one-out 1-NN on Chars74K digits is 94% right);
2. a k-nearest-neighbour graph -> spectral clustering into C groups;
3. each group gets the class its members' labels avoid (a one-to-one assignment of groups to
   classes minimising the members filed under their group's class: scipy's Hungarian method);
4. each image then takes the majority of its neighbours' recovered classes, never its own given
   label (which it is known not to be).

The same groups say whether the labels follow the images at all: `consistency` (the share of
images whose label is their group's most common one) is high for clean labels and low for
scrambled or complementary ones, and `avoidance` (the share filed under their group's assigned
class, over its 1/C expectation when labels ignore content) is near 0 only for complementary ones.
Arrays only; charlab.suspects turns them into a diagnosis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MAX_IMAGES = 6000  # the graph's eigenvectors are dense N×N work; beyond this a subset is clustered
NEIGHBOURS = 10  # k of the k-NN graph (10 measured best of 5/10/15 on Chars74K digits)
BLUR_SIGMA = 1.0  # px at 28×28: a pen stroke off by a pixel still overlaps


@dataclass
class Avoidance:
    recovered: np.ndarray  # N: the most likely true class of each image (never its given label)
    groups: np.ndarray  # N: cluster of each image (-1 for images not clustered)
    group_class: np.ndarray  # G: the class each group was assigned (the one its labels avoid)
    consistency: float  # share of images whose label is their group's most common label
    avoidance: float  # share of images filed under their group's assigned class, divided by 1/C


def features(images: torch.Tensor) -> np.ndarray:
    """uint8 N×1×H×W -> N×D float32: Gaussian-blurred, mean-removed, unit-norm pixels."""
    x = images.float().div(255.0)  # N×1×H×W
    r = max(1, int(round(2 * BLUR_SIGMA)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-t ** 2 / (2 * BLUR_SIGMA ** 2))
    g = g / g.sum()
    x = F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, r))  # blur along W
    x = F.conv2d(x, g.view(1, 1, -1, 1), padding=(r, 0))  # and along H
    f = x.flatten(1)  # N×D
    f = f - f.mean(dim=1, keepdim=True)
    return F.normalize(f, dim=1).numpy()


def knn(feats: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """N×k indices of each row's nearest other rows by cosine similarity."""
    s = feats @ feats.T  # N×N
    np.fill_diagonal(s, -np.inf)
    k = min(k, len(feats) - 1)
    nn = np.argpartition(-s, k - 1, axis=1)[:, :k]  # N×k, unordered
    return nn


def spectral_clusters(nn: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster the symmetrised k-NN graph (Ng, Jordan & Weiss 2001): the normalised Laplacian's
    bottom eigenvectors, rows scaled to unit length, then k-means."""
    n = len(nn)
    w = np.zeros((n, n), dtype=np.float64)  # N×N adjacency
    w[np.repeat(np.arange(n), nn.shape[1]), nn.ravel()] = 1.0
    w = np.maximum(w, w.T)
    d = w.sum(axis=1)
    lap = np.eye(n) - w / np.sqrt(np.outer(d, d))
    _, vecs = np.linalg.eigh(lap)
    v = vecs[:, :n_clusters]  # N×G
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return kmeans(v, n_clusters, seed=seed)


def kmeans(x: np.ndarray, k: int, seed: int = 0, restarts: int = 8, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; the best of `restarts` by inertia. x N×D -> N labels."""
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centres = [x[rng.integers(len(x))]]
        for _ in range(1, k):
            d2 = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
            centres.append(x[rng.choice(len(x), p=d2 / d2.sum()) if d2.sum() > 0 else rng.integers(len(x))])
        c = np.array(centres)  # k×D
        for _ in range(iters):
            lab = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(axis=1)  # N
            new = np.array([x[lab == j].mean(axis=0) if (lab == j).any() else c[j] for j in range(k)])
            if np.allclose(new, c):
                break
            c = new
        inertia = ((x - c[lab]) ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = lab, inertia
    return best


def recover(images: torch.Tensor, given: np.ndarray, num_classes: int, seed: int = 0,
            refine_rounds: int = 5) -> Avoidance:
    """Recover true labels from complementary ones (see the module docstring). images uint8 N×1×H×W."""
    given = np.asarray(given, dtype=np.int64)
    n, c = len(given), num_classes
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, MAX_IMAGES, replace=False)) if n > MAX_IMAGES else np.arange(n)
    feats = features(images[torch.as_tensor(idx)])
    nn = knn(feats)
    groups = spectral_clusters(nn, c, seed=seed)  # len(idx)
    g_given = given[idx]
    hist = np.zeros((c, c))  # group × given label
    np.add.at(hist, (groups, g_given), 1.0)
    from scipy.optimize import linear_sum_assignment

    share = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    rows, cols = linear_sum_assignment(share)  # the class each group's labels avoid most, one-to-one
    group_class = np.empty(c, dtype=np.int64)
    group_class[rows] = cols
    rec = group_class[groups]
    rec = np.where(rec == g_given, -1, rec)  # an image is never its given label: decide it from neighbours
    for _ in range(refine_rounds):
        votes = np.zeros((len(idx), c))
        known = rec[nn] >= 0  # M×k
        np.add.at(votes, (np.repeat(np.arange(len(idx)), nn.shape[1])[known.ravel()], rec[nn][known]), 1.0)
        votes[np.arange(len(idx)), g_given] = -1.0
        rec = votes.argmax(axis=1)
    consistency = float(hist.max(axis=1).sum() / max(len(idx), 1))
    avoidance = float(hist[rows, cols].sum() / max(len(idx), 1) * c)
    recovered = np.full(n, -1, dtype=np.int64)
    recovered[idx] = rec
    all_groups = np.full(n, -1, dtype=np.int64)
    all_groups[idx] = groups
    if len(idx) < n:  # images left out of the graph: the majority of their nearest clustered images
        rest = np.setdiff1d(np.arange(n), idx)
        f_rest = features(images[torch.as_tensor(rest)])
        near = np.argpartition(-(f_rest @ feats.T), NEIGHBOURS - 1, axis=1)[:, :NEIGHBOURS]  # R×k
        votes = np.zeros((len(rest), c))
        np.add.at(votes, (np.repeat(np.arange(len(rest)), NEIGHBOURS), rec[near].ravel()), 1.0)
        votes[np.arange(len(rest)), given[rest]] = -1.0
        recovered[rest] = votes.argmax(axis=1)
    return Avoidance(recovered=recovered, groups=all_groups, group_class=group_class,
                     consistency=consistency, avoidance=avoidance)
