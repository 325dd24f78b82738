"""Tile coding over the farm observation, in numpy and as an ONNX graph.

A :class:`TileCoder` has groups of observation dimensions (singletons and a
few pairs); each group is covered by ``tilings`` offset grids of ``bins``
cells per dimension. An observation activates one tile per (group, tiling),
and ``Q(s, a) = sum of W[tile, a]`` over the active tiles.

The index arithmetic is float32 in exactly the order the ONNX graph uses
(normalise, scale, offset, floor, clip, weighted sum), so numpy and ONNX
Runtime activate the same tiles.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Pairs of observation features (by name) tiled jointly: the interactions a
#: scaler needs (load or backlog against the replicas it has).
DEFAULT_PAIRS = (
    ("queueing_floor_frac", "desired_frac"),
    ("offered_load_frac", "desired_frac"),
    ("backlog_log", "desired_frac"),
    ("window_qos", "desired_frac"),
    ("arrival_rate_log", "desired_frac"),
    ("latency_p95_log", "queueing_floor_frac"),
    ("backlog_log", "starting_frac"),
    ("queueing_floor_frac", "ready_frac"),
)


@dataclass
class TileCoder:
    """Grid tilings over groups of observation dimensions."""

    low: np.ndarray
    high: np.ndarray
    groups: list[tuple[int, ...]]
    tilings: int = 4
    bins: int = 8
    # Derived tables (one row per (group, tiling, dim) component).
    comp_dim: np.ndarray = field(init=False)
    comp_offset: np.ndarray = field(init=False)
    comp_stride: np.ndarray = field(init=False)
    comp_owner: np.ndarray = field(init=False)
    owner_base: np.ndarray = field(init=False)
    n_tiles: int = field(init=False)

    def __post_init__(self) -> None:
        self.low = np.asarray(self.low, dtype=np.float32)
        self.high = np.asarray(self.high, dtype=np.float32)
        span = np.maximum(self.high - self.low, np.float32(1e-6))
        self.inv_span = (np.float32(1.0) / span).astype(np.float32)
        dims, offs, strides, owners, bases = [], [], [], [], []
        base = 0
        owner = 0
        for g in self.groups:
            for t in range(self.tilings):
                stride = 1
                for j, d in enumerate(g):
                    dims.append(d)
                    # Asymmetric offsets (1, 3, 5, ... per dim), as recommended
                    # for grid tilings, as a fraction of one cell.
                    offs.append(((t * (2 * j + 1)) % self.tilings) / self.tilings)
                    strides.append(stride)
                    owners.append(owner)
                    stride *= self.bins + 1
                bases.append(base)
                base += stride
                owner += 1
        self.comp_dim = np.asarray(dims, dtype=np.int64)
        self.comp_offset = np.asarray(offs, dtype=np.float32)
        self.comp_stride = np.asarray(strides, dtype=np.float32)
        self.comp_owner = np.asarray(owners, dtype=np.int64)
        self.owner_base = np.asarray(bases, dtype=np.float32)
        self.n_active = owner
        self.n_tiles = base
        # 0/1 matrix summing components into their (group, tiling).
        self.assign = np.zeros((len(dims), owner), dtype=np.float32)
        self.assign[np.arange(len(dims)), self.comp_owner] = 1.0

    @classmethod
    def for_spec(cls, names: Sequence[str], low: Sequence[float], high: Sequence[float], *,
                 tilings: int = 4, bins: int = 8,
                 pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS) -> TileCoder:
        """Singletons of every feature plus the named pairs that exist."""
        index = {n: i for i, n in enumerate(names)}
        groups: list[tuple[int, ...]] = [(i,) for i in range(len(names))]
        groups += [(index[a], index[b]) for a, b in pairs if a in index and b in index]
        return cls(np.asarray(low), np.asarray(high), groups, tilings, bins)

    def active(self, obs: np.ndarray) -> np.ndarray:
        """Active tile indices, int64 ``[N, n_active]`` for obs ``[N, D]``."""
        x = np.asarray(obs, dtype=np.float32)
        xn = (x - self.low) * self.inv_span
        sel = xn[:, self.comp_dim]
        v = sel * np.float32(self.bins) + self.comp_offset
        v = np.clip(np.floor(v), np.float32(0), np.float32(self.bins))
        idx = (v * self.comp_stride) @ self.assign + self.owner_base
        return idx.astype(np.int64)

    def q(self, w: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Q-values ``[N, A]`` under weights ``w`` ``[n_tiles, A]``."""
        return w[self.active(obs)].sum(axis=1)

    def to_json(self) -> str:
        """The coder's parameters (for the config hash and metadata)."""
        return json.dumps({"groups": self.groups, "tilings": self.tilings, "bins": self.bins,
                           "low": self.low.tolist(), "high": self.high.tolist()})
