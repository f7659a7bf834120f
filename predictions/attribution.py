"""Per-contact factors of a gradient-boosting model: exact Shapley values of its trees.

A factor answers "how far did this field move this contact's score, compared with the contacts
the model was trained on", in log-odds, and the factors add up to the score. For a sum of trees
that is computed exactly, without sampling:

- The players are the contact's fields, not the encoded columns (`players`): a category's one-hot
  columns are one player ("seniority: vp"), a number and its missing-indicator are one, each
  common tag is one. A player is swapped with all its columns, so every mixture looked at is a
  contact that could exist.
- For a contact x and one reference contact r, the game is v(S) = the boosted model's raw score
  (log-odds) of x's values for the players in S and r's for the others ("baseline Shapley"). A
  mixture reaches a tree's leaf exactly when each player on the leaf's path comes from a side that
  passes all of that player's splits, so each leaf is a conjunction game with a closed form: with a
  players that only x passes and b that only r passes, each of the a gets
  + value (a-1)! b! / (a+b)!, each of the b gets - value a! (b-1)! / (a+b)!, and a leaf that a
  player fails on both sides is never reached. Summed over leaves and trees that is the
  interventional Tree SHAP of Lundberg et al., computed here with matrix products for a page of
  contacts at once.
- Averaged over a background of BACKGROUND_ROWS training contacts stored with the model version,
  the contributions add up exactly: baseline + sum of contributions = the raw score of x, with
  baseline = the background's average raw score ("compared with the average contact the model
  saw"). The calibrated probability is a non-decreasing (isotonic) function of the raw score.

Why not the `shap` package: the same numbers per encoded column (we would still group them), for
numba and llvmlite (tens of MB, and a second or more of import in every web worker). Why not
occlusion (replace one field by the background and measure the change): it adds up only for an
additive model, and boosted trees interact.

The trees are read from the HistGradientBoostingClassifier's `_predictors`: scikit-learn has no
public accessor. The tests compare the sum with its public `decision_function`, so a change in
scikit-learn fails there rather than showing wrong factors.

scipy.sparse is imported by the two functions that build matrices, when first used: training and
scoring import this module in every process at start-up, and scipy.sparse cost ~170 ms of each
`django.setup()` (as in predictions/__init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

BACKGROUND_ROWS = 50
# Contacts per block of the pairwise step: its arrays hold leaves x contacts x background values.
BLOCK_CELLS = 2_000_000


def players(columns: list[dict]) -> list[list[int]]:
    """The encoded column positions of each player: one per number (with its missing-indicator),
    one per category (all its one-hot columns), one per tag."""
    grouped: dict[tuple[str, ...], list[int]] = {}
    for j, column in enumerate(columns):
        key = (column["source"], column["value"]) if column["kind"] == "tag" else (column["source"],)
        grouped.setdefault(key, []).append(j)
    return list(grouped.values())


def background_rows(X: np.ndarray, *, seed: int) -> list[list[float]]:
    """A random sample of training rows to store with the model version (JSON: plain floats)."""
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(X), size=min(BACKGROUND_ROWS, len(X)), replace=False))
    return X[take].astype(np.float64).tolist()


@dataclass(frozen=True)
class Leaves:
    """Every leaf of every tree, with its path's splits grouped into slots, one per player."""

    feature: np.ndarray  # per node (all trees): the column it splits on
    threshold: np.ndarray  # go left when value <= threshold
    missing_left: np.ndarray  # where a missing value goes
    # nodes x (leaf, slot): +1 where the path goes right (a row going left fails), -1 where it goes
    # left; with `offset` (the number of -1 entries) a row's total is the number of splits it fails.
    violations: sparse.csr_matrix
    offset: np.ndarray
    value: np.ndarray  # per leaf
    slot_player: np.ndarray  # leaves x slots: the player, or -1 for a padding slot

    def passes(self, X: np.ndarray) -> np.ndarray:
        """(rows x leaves x slots): the row passes every split of that slot's player on the path."""
        values = X.astype(np.float64)[:, self.feature]
        left = np.where(np.isnan(values), self.missing_left, values <= self.threshold).astype(np.float64)
        failed = np.asarray(self.violations.T @ left.T).T + self.offset
        return (failed == 0).reshape(len(X), *self.slot_player.shape)


def leaves(booster, player_of: np.ndarray) -> Leaves:
    """The leaves of a fitted binary HistGradientBoostingClassifier, all trees side by side."""
    nodes = np.concatenate([predictor.nodes for (predictor,) in booster._predictors])
    if nodes["is_categorical"].any():
        raise ValueError("categorical splits are not supported: the encoder makes numeric columns only")
    sizes = [len(predictor.nodes) for (predictor,) in booster._predictors]
    first = np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)  # each node's tree's first node
    split = np.flatnonzero(nodes["is_leaf"] == 0)
    left, right = nodes["left"][split] + first[split], nodes["right"][split] + first[split]
    parent = np.full(len(nodes), -1)
    parent[left], parent[right] = split, split
    leaf_nodes = np.flatnonzero(nodes["is_leaf"])
    # Walk every leaf's path up to its root at once: one (leaf, split, went left) entry per step.
    steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    leaf, child = np.arange(len(leaf_nodes)), leaf_nodes
    while len(leaf):
        above = parent[child]
        keep = above >= 0
        leaf, child, above = leaf[keep], child[keep], above[keep]
        steps.append((leaf, above, nodes["left"][above] + first[above] == child))
        child = above
    leaf, node, went_left = (np.concatenate(column) for column in zip(*steps, strict=True))
    player = player_of[nodes["feature_idx"][node]]
    # A slot per (leaf, player): its rank among the leaf's distinct players.
    pairs, slot_of = np.unique(leaf * len(player_of) + player, return_inverse=True)
    pair_leaf = pairs // len(player_of)
    rank = np.arange(len(pairs)) - np.searchsorted(pair_leaf, pair_leaf)
    depth = max(1, int(rank.max(initial=0)) + 1)
    from scipy import sparse

    slot_player = np.full((len(leaf_nodes), depth), -1)
    slot_player[pair_leaf, rank] = pairs % len(player_of)
    cell = leaf * depth + rank[slot_of]
    violations = sparse.csr_matrix(
        (np.where(went_left, -1.0, 1.0), (node, cell)), shape=(len(nodes), len(leaf_nodes) * depth)
    )
    offset = np.bincount(cell, weights=went_left.astype(np.float64), minlength=len(leaf_nodes) * depth)
    return Leaves(
        feature=nodes["feature_idx"],
        threshold=nodes["num_threshold"],
        missing_left=nodes["missing_go_to_left"].astype(bool),
        violations=violations,
        offset=offset,
        value=nodes["value"][leaf_nodes],
        slot_player=slot_player,
    )


def _weights(depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Shapley weights of a leaf's conjunction game with a players only x passes and b only r
    passes, at a * (depth + 1) + b: what each of the a gains (up) and each of the b loses (down),
    per unit of the leaf's value. The extra last cell (zero) is for a leaf no mixture reaches."""
    size = depth + 1
    up, down = np.zeros(size * size + 1), np.zeros(size * size + 1)
    for a in range(size):
        for b in range(size - a):
            if a:
                up[a * size + b] = factorial(a - 1) * factorial(b) / factorial(a + b)
            if b:
                down[a * size + b] = factorial(a) * factorial(b - 1) / factorial(a + b)
    return up, down


def attributions(booster, X: np.ndarray, background: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    """(contacts x players) contributions in log-odds of `booster`'s raw score: each contact's
    add up to its raw score minus the background's average raw score."""
    from scipy import sparse

    player_of = np.empty(X.shape[1], dtype=np.int64)
    for player, columns in enumerate(groups):
        player_of[columns] = player
    tree = leaves(booster, player_of)
    n_leaves, depth = tree.slot_player.shape
    up_weight, down_weight = _weights(depth)
    # Leaves first: the pairwise step is a batch of small matrix products, one per leaf.
    r_pass = tree.passes(background).transpose(1, 0, 2)  # leaves x background x slots
    r_pass_t = r_pass.transpose(0, 2, 1).astype(np.float32)
    r_pass64, r_fail64 = r_pass.astype(np.float64), (~r_pass).astype(np.float64)
    r_fails = (~r_pass).sum(axis=2, dtype=np.float32)[:, None, :]  # leaves x 1 x background
    # Per (leaf, slot) cell, the player it adds to; padding slots go to a column that is dropped.
    cells = tree.slot_player.ravel()
    to_players = sparse.csr_matrix(
        (np.ones(cells.size), (np.where(cells < 0, len(groups), cells), np.arange(cells.size))),
        shape=(len(groups) + 1, cells.size),
    )
    out = np.zeros((len(X), len(groups)))
    block = max(1, BLOCK_CELLS // max(1, n_leaves * len(background)))
    for start in range(0, len(X), block):
        x_pass = tree.passes(X[start : start + block]).transpose(1, 0, 2)  # leaves x n x slots
        x_fail = (~x_pass).astype(np.float32)
        only_r = np.matmul(x_fail, r_pass_t)  # leaves x n x background: b
        neither = x_fail.sum(axis=2)[:, :, None] - only_r
        only_x = r_fails - neither  # a
        cell = np.where(neither == 0, only_x * (depth + 1) + only_r, len(up_weight) - 1).astype(np.intp)
        raised = np.matmul(up_weight[cell], r_fail64)  # leaves x n x slots
        lowered = np.matmul(down_weight[cell], r_pass64)
        per_slot = tree.value[:, None, None] * np.where(x_pass, raised, -lowered)
        flat = per_slot.transpose(1, 0, 2).reshape(per_slot.shape[1], -1)
        out[start : start + block] = np.asarray(to_players @ flat.T).T[:, : len(groups)]
    return out / len(background)
