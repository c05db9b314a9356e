"""Learning from labels that say what an image is NOT, without any model that saw clean labels.

In a complementary labelling every image is filed under a class it is not. A model trained on
those labels learns them (confident learning's blind spot), and on a small set it learns little
else: each label rules out one class of C, log2(C/(C-1)) bits instead of log2(C). What the labels
still carry is their AVOIDANCE: the images of one true class sit in every folder but their own.

So the structure comes from the images and the class from the labels:
1. images -> features: deskewed, then histograms of signed gradient orientation over a grid of
   cells (HOG-like). Handwriting of one character is closer to itself in these than in pixels
   (Chars74K digits, leave-one-out 1-NN: 99.25% vs 94.75% for blurred pixels; 95% vs 83% of the
   10 nearest neighbours share the image's class);
2. a k-nearest-neighbour graph -> spectral clustering into C groups, for several k and k-means
   seeds (one clustering can merge two digits and split a third); on sets large enough, into 2-6
   groups per class too (a class written in several styles is several groups of the graph);
3. each group gets the class its labels avoid (C groups: a one-to-one assignment of groups to classes
   minimising the members filed under their group's class, by scipy's Hungarian method; more
   groups: each its least common label, see assign_groups), counted
   over each group's CORE members only (those whose neighbours share their group) so a few
   stray images cannot move a group's class. The clustering whose assignment leaves the fewest
   core members under their group's class wins: a wrong assignment puts ~1/(C-1) of them there;
4. each image then takes its neighbours' recovered classes, never its own given label (which it
   is known not to be), balanced so every class ends with about N/C images (Sinkhorn scaling of
   the neighbour votes). The balance is an assumption (the true classes are about equally
   common, as in Chars74K and MNIST): the labels cannot measure class sizes at this scale
   (class k's size is N - (C-1)·n_k, with n_k the images filed under k: ±54 images for 400 digits). It is
   what fixes a group that swallowed part of another digit: without it 95%, with it 96-98.5%
   of 400 Chars74K digits are recovered (BENCHMARKS.md, Label audit).

The same groups say whether the labels follow the images at all: `consistency` (the share of
images whose label is their group's most common one) is high for clean labels and low for
scrambled or complementary ones, and `avoidance` (the share filed under their group's assigned
class, over its 1/C expectation when labels ignore content) is near 0 only for complementary ones.
Arrays only; charlab.suspects turns them into a diagnosis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MAX_IMAGES = 6000  # the k-NN search is dense N×N work; beyond this a subset is clustered
DENSE_EIGEN = 2000  # graphs up to this size get exact dense eigenvectors, larger ones sparse Lanczos
NEIGHBOURS = 10  # k of the graph the recovered labels are voted over (5/10/20 measured: 10)
CLUSTER_NEIGHBOURS = (10, 15, 20)  # k of the clustering graphs tried (15 won most often on digits)
CLUSTER_SEEDS = 3  # k-means seeds tried per graph (for C groups; one for more groups)
GROUPS_PER_CLASS = (1, 2, 4, 6)  # group counts tried, as multiples of C, where groups stay large enough:
MIN_GROUP = 50  # images per group for its avoided class to be read on its own (see assign_groups)
CORE = 0.8  # an image is a core member of its group when this share of its neighbours is in it too
ORIENTATIONS = 12  # signed gradient-orientation bins (30° each)
CELL_SIGMA = 2.0  # px at 28×28: the Gaussian window each orientation histogram pools over
CELL_STRIDE = 4  # px between cell centres (a 7×7 grid at 28×28)
REFINE_ROUNDS = 5


@dataclass
class Avoidance:
    recovered: np.ndarray  # N: the most likely true class of each image (never its given label)
    groups: np.ndarray  # N: cluster of each image (-1 for images not clustered)
    group_class: np.ndarray  # G: the class each group was assigned (the one its labels avoid)
    consistency: float  # share of images whose label is their group's most common label
    avoidance: float  # share of images filed under their group's assigned class, divided by 1/C


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel. x N×K×H×W -> N×K×H×W."""
    r = max(1, int(round(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    k = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(k, 1, 1, 1), padding=(0, r), groups=k)  # along W
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(k, 1, 1, 1), padding=(r, 0), groups=k)  # along H


def deskew(x: torch.Tensor) -> torch.Tensor:
    """Shear each image so its ink's x-y covariance vanishes, and centre it (the slant of a hand
    is not the character). x float N×1×H×W -> N×1×H×W."""
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ink = x[:, 0]  # N×H×W
    mass = ink.sum((1, 2)).clamp_min(1e-6)
    cy = (ink * ys).sum((1, 2)) / mass
    cx = (ink * xs).sum((1, 2)) / mass
    dy = ys - cy[:, None, None]
    var_y = (ink * dy ** 2).sum((1, 2)) / mass
    cov = (ink * dy * (xs - cx[:, None, None])).sum((1, 2)) / mass
    alpha = (cov / var_y.clamp_min(1e-6)).clamp(-1, 1)  # N: x shift per row
    theta = torch.zeros(n, 2, 3)  # output (normalised) -> input coordinates
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 1] = alpha * h / w
    theta[:, 0, 2] = (cx - (w - 1) / 2) / ((w - 1) / 2)
    theta[:, 1, 2] = (cy - (h - 1) / 2) / ((h - 1) / 2)
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=True), align_corners=True)


def features(images: torch.Tensor) -> np.ndarray:
    """uint8 N×1×H×W -> N×D float32, unit norm: signed gradient-orientation histograms of the
    deskewed image, pooled over a grid of Gaussian cells, square-rooted (Hellinger)."""
    x = deskew(images.float().div(255.0))  # N×1×H×W
    k = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3) / 8  # Sobel
    gx = F.conv2d(x, k, padding=1)
    gy = F.conv2d(x, k.transpose(2, 3), padding=1)
    mag = (gx ** 2 + gy ** 2).sqrt()  # N×1×H×W
    a = torch.atan2(gy, gx) % (2 * math.pi) / (2 * math.pi) * ORIENTATIONS  # in [0, bins)
    lo = a.floor()
    frac = a - lo
    lo = lo.long() % ORIENTATIONS
    hist = torch.zeros(x.shape[0], ORIENTATIONS, *x.shape[2:])  # N×B×H×W, each pixel split over 2 bins
    hist.scatter_add_(1, lo, mag * (1 - frac))
    hist.scatter_add_(1, (lo + 1) % ORIENTATIONS, mag * frac)
    s = CELL_STRIDE
    cells = _blur(hist, CELL_SIGMA)[:, :, s // 2::s, s // 2::s]  # N×B×7×7
    return F.normalize(cells.flatten(1).sqrt(), dim=1).numpy()


def knn(feats: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """N×k indices of each row's nearest other rows by cosine similarity."""
    s = feats @ feats.T  # N×N
    np.fill_diagonal(s, -np.inf)
    k = min(k, len(feats) - 1)
    nn = np.argpartition(-s, k - 1, axis=1)[:, :k]  # N×k, unordered
    return nn


def spectral_embedding(nn: np.ndarray, dims: int) -> np.ndarray:
    """The symmetrised k-NN graph's normalised-Laplacian bottom eigenvectors, rows scaled to unit
    length (Ng, Jordan & Weiss 2001). nn N×k -> N×dims."""
    n = len(nn)
    if n > DENSE_EIGEN:
        return _sparse_embedding(nn, dims)
    w = np.zeros((n, n), dtype=np.float64)  # N×N adjacency
    w[np.repeat(np.arange(n), nn.shape[1]), nn.ravel()] = 1.0
    w = np.maximum(w, w.T)
    d = w.sum(axis=1)
    lap = np.eye(n) - w / np.sqrt(np.outer(d, d))
    _, vecs = np.linalg.eigh(lap)
    v = vecs[:, :dims]  # N×G
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _sparse_embedding(nn: np.ndarray, dims: int) -> np.ndarray:
    """As spectral_embedding, from the sparse graph: the normalised adjacency's top eigenvectors
    (the Laplacian's bottom ones) by Lanczos; dense eigh of 6,000×6,000 took minutes per graph."""
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.linalg import eigsh

    n, k = nn.shape
    w = coo_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), nn.ravel())), shape=(n, n)).tocsr()
    w = w.maximum(w.T)
    inv = diags(1.0 / np.sqrt(np.asarray(w.sum(axis=1)).ravel()))
    _, vecs = eigsh(inv @ w @ inv, k=dims, which="LA", v0=np.ones(n) / np.sqrt(n))
    v = vecs[:, ::-1]  # N×G, largest first
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def spectral_clusters(nn: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster the symmetrised k-NN graph: its spectral embedding, then k-means. -> N labels."""
    return kmeans(spectral_embedding(nn, n_clusters), n_clusters, seed=seed)


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


def assign_groups(groups: np.ndarray, given: np.ndarray, nn: np.ndarray, num_classes: int,
                  n_groups: int | None = None) -> tuple[np.ndarray, float]:
    """The class each group's core members avoid. -> (group_class G, conflict), where conflict is
    the share of core members filed under their group's class (0 for a right assignment of pure
    groups, ~1/(C-1) for a wrong one).

    C groups are assigned one-to-one (with ~N/C images each, another class's count can be 0 by
    chance: (1 - 1/(C-1))^(N/C) is 1% for 40 digits). More groups (a class written in several
    styles, as synthetic digits are, is several groups of a k-NN graph) each take the class they
    avoid most, on their own: at MIN_GROUP images a chance zero is (8/9)^50 = 0.3% per class."""
    c = num_classes
    g = n_groups or c
    core = (groups[nn] == groups[:, None]).mean(axis=1) >= CORE  # N
    hist = np.zeros((g, c))  # group × given label, core members only
    np.add.at(hist, (groups[core], given[core]), 1.0)
    share = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    if g == c:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(share)
        group_class = np.empty(c, dtype=np.int64)
        group_class[rows] = cols
    else:
        group_class = share.argmin(axis=1)
    return group_class, float(hist[np.arange(g), group_class].sum() / max(core.sum(), 1))


def balanced_votes(rec: np.ndarray, given: np.ndarray, nn: np.ndarray, num_classes: int,
                   rounds: int = REFINE_ROUNDS, iters: int = 50) -> np.ndarray:
    """Each image's class from its neighbours' recovered classes, never its given label, with the
    votes scaled (Sinkhorn) so every class holds about N/C images. rec, given N; nn N×k -> N."""
    n, c = len(given), num_classes
    rows = np.repeat(np.arange(n), nn.shape[1])
    for _ in range(rounds):
        votes = np.full((n, c), 0.1)  # N×C; a small floor keeps every allowed class reachable
        np.add.at(votes, (rows, rec[nn].ravel()), 1.0)
        votes[np.arange(n), given] = 0.0
        p = votes / votes.sum(axis=1, keepdims=True)
        for _ in range(iters):
            p = p * (n / c) / p.sum(axis=0, keepdims=True)
            p = p / p.sum(axis=1, keepdims=True)
        rec = p.argmax(axis=1)
    return rec


def recover(images: torch.Tensor, given: np.ndarray, num_classes: int, seed: int = 0) -> Avoidance:
    """Recover true labels from complementary ones (see the module docstring). images uint8 N×1×H×W."""
    given = np.asarray(given, dtype=np.int64)
    n, c = len(given), num_classes
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, MAX_IMAGES, replace=False)) if n > MAX_IMAGES else np.arange(n)
    feats = features(images[torch.as_tensor(idx)])
    g_given = given[idx]
    best = None  # (conflict, number of groups, groups, group_class): the least conflict, then the fewest groups
    sizes = [m * c for m in GROUPS_PER_CLASS if m == 1 or len(idx) >= m * c * MIN_GROUP]
    for k in CLUSTER_NEIGHBOURS:
        nn_k = knn(feats, k)
        emb_all = spectral_embedding(nn_k, max(sizes))
        for g in sizes:
            emb = emb_all[:, :g]
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            for s in range(CLUSTER_SEEDS if g == c else 1):
                groups = kmeans(emb, g, seed=seed + s)
                group_class, conflict = assign_groups(groups, g_given, nn_k, c, g)
                if g > c and len(np.unique(group_class)) < c:
                    continue  # a class no group avoids: this grouping cannot tell it
                if best is None or (conflict, g) < best[:2]:
                    best = (conflict, g, groups, group_class)
    _, n_groups, groups, group_class = best
    nn = knn(feats)
    rec = balanced_votes(group_class[groups], g_given, nn, c)
    hist = np.zeros((n_groups, c))  # group × given label, every member
    np.add.at(hist, (groups, g_given), 1.0)
    consistency = float(hist.max(axis=1).sum() / max(len(idx), 1))
    avoidance = float(hist[np.arange(n_groups), group_class].sum() / max(len(idx), 1) * c)
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
