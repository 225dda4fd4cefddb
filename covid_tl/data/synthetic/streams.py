"""Seeded random streams: every draw of a phantom comes from a ``SeedSequence`` keyed by
(stream, patient[, image]), never from global state, so DataLoader workers may render images
in any order and get the same pixels."""
from __future__ import annotations

import numpy as np

# Stream tags: the first spawn-key word, so that the streams never share random numbers.
LABELS, COUNTS, MARKED, PATIENT, IMAGE, MARKS, CHAIN = range(7)


def rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for one (stream, patient, image) key: order-free and worker-safe."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))
