"""Bookkeeping both engines share: the statistics arrays grow (between batches) as new tenants appear."""

from __future__ import annotations

import numpy as np


def _grown(array: np.ndarray, rows: int, columns: int) -> np.ndarray:
    out = np.zeros((rows, columns), dtype=array.dtype)
    out[:array.shape[0], :array.shape[1]] = array
    return out


def grow_tenant_statistics(engine, n_tenants: int) -> None:
    """Grow ``engine``'s tenant_stats [R, fields], hits_from [R, O], lost_to [R, 1 + E] and evictions_by [E, O]
    to at least ``n_tenants`` tenants, keeping what they hold."""
    if n_tenants <= engine.tenant_stats.shape[0]:
        return
    engine.tenant_stats = _grown(engine.tenant_stats, n_tenants, engine.tenant_stats.shape[1])
    engine.hits_from = _grown(engine.hits_from, n_tenants, n_tenants)
    engine.lost_to = _grown(engine.lost_to, n_tenants, n_tenants + 1)
    engine.evictions_by = _grown(engine.evictions_by, n_tenants, n_tenants)
