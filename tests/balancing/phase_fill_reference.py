"""The per-phase fill as it was first written, kept as the reference that
`balancing.phase_alloc.fill` is tested against (tests/balancing/test_phase_fill.py): the same
arithmetic per round, but only the first constraint in level order applied per round, which is
progressive filling by definition. (The first version applied every constraint up to the first
that depended on a charger stopped in the same round; with unbalance constraints that was not
always exact, see docs/performance.md.)"""

from __future__ import annotations

import numpy as np

_EPS = 1e-9


def reference_fill(
    mins: np.ndarray,
    dem: np.ndarray,
    e_c: np.ndarray,
    e_j: np.ndarray,
    e_v: np.ndarray,
    room: np.ndarray,
    depth: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Progressive filling one constraint at a time: the constraint that becomes tight first
    (ties: deeper node, then lower number) stops the chargers it raises, every level is solved
    again, and so on. Slow and plainly right: `balancing.phase_alloc.fill` must give the same
    levels and bindings."""
    n_m = len(mins)
    n_c = len(room)
    stopped = np.zeros(n_m, dtype=bool)
    value = mins.astype(float).copy()
    bind = np.full(n_m, -1, dtype=np.intp)
    # the constraints as seen by this class: room above the minimums, plus the minimums
    cap = room + np.bincount(e_c, weights=e_v * mins[e_j], minlength=n_c)
    t = 0.0
    done_c = np.zeros(n_c, dtype=bool)
    # A constraint's level is recomputed only when one of its members stopped since it was
    # last computed: the others' piecewise-linear functions have not changed.
    dirty = np.ones(n_c, dtype=bool)
    t_c = np.full(n_c, np.inf)
    while True:
        rising_all = ~stopped[e_j]
        if not rising_all.any():
            break
        in_dirty = dirty[e_c]
        fixed_e = in_dirty & ~rising_all
        # fixed part of each constraint: its stopped members
        fixed = np.bincount(e_c[fixed_e], weights=e_v[fixed_e] * value[e_j[fixed_e]], minlength=n_c)
        rising_e = rising_all & in_dirty
        rc, rj, rv = e_c[rising_e], e_j[rising_e], e_v[rising_e]
        lo_, hi_ = mins[rj], dem[rj]
        # state at t: C + t * S over the rising entries
        below = t < lo_
        inside = (~below) & (t < hi_)
        c0 = np.bincount(
            rc, weights=np.where(below, rv * lo_, np.where(inside, 0.0, rv * hi_)), minlength=n_c
        )
        s0 = np.bincount(rc, weights=np.where(inside, rv, 0.0), minlength=n_c)
        g_t = fixed + c0 + t * s0
        t_c[dirty] = np.inf
        now_tight = dirty & (g_t >= cap - _EPS) & ~done_c & (np.bincount(rc, minlength=n_c) > 0)
        # events after t: entering the slope at min, leaving it at demand
        ev_lo = lo_ > t
        ev_hi = hi_ > t
        ev_c = np.concatenate([rc[ev_lo], rc[ev_hi]])
        ev_b = np.concatenate([lo_[ev_lo], hi_[ev_hi]])
        ev_dc = np.concatenate([-rv[ev_lo] * lo_[ev_lo], rv[ev_hi] * hi_[ev_hi]])
        ev_ds = np.concatenate([rv[ev_lo], -rv[ev_hi]])
        if len(ev_c):
            o = np.lexsort((ev_b, ev_c))
            ev_c, ev_b, ev_dc, ev_ds = ev_c[o], ev_b[o], ev_dc[o], ev_ds[o]
            cum_c = np.cumsum(ev_dc)
            cum_s = np.cumsum(ev_ds)
            first = np.searchsorted(ev_c, ev_c, side="left")
            base_c = np.where(first > 0, cum_c[first - 1], 0.0)
            base_s = np.where(first > 0, cum_s[first - 1], 0.0)
            # state before each event (within its constraint)
            prev_c = c0[ev_c] + cum_c - ev_dc - base_c
            prev_s = s0[ev_c] + cum_s - ev_ds - base_s
            g_at = fixed[ev_c] + prev_c + ev_b * prev_s
            hit = np.flatnonzero(g_at >= cap[ev_c] - _EPS)
            if len(hit):
                hc, first_hit = np.unique(ev_c[hit], return_index=True)
                k = hit[first_hit]
                slope = prev_s[k]
                lam = np.where(
                    slope > _EPS,
                    (cap[hc] - fixed[hc] - prev_c[k]) / np.where(slope > _EPS, slope, 1.0),
                    ev_b[k],
                )
                t_c[hc] = np.minimum(np.maximum(lam, t), ev_b[k])
        t_c[now_tight] = t
        t_c[done_c] = np.inf
        finite = np.flatnonzero(np.isfinite(t_c))
        if not len(finite):
            break
        # Level order; constraints tight at the same level (up to float noise) deepest node
        # first, so that the charger is said to be bound by the node nearest to it (as the kW
        # engine says).
        if depth is None:
            order = finite[np.argsort(t_c[finite], kind="stable")]
        else:
            order = finite[np.lexsort((-depth[finite], np.round(t_c[finite], 6)))]
        # Apply the first: it stops every rising charger it raises.
        c = order[0]
        raising = (e_c == c) & (e_v > 0.0) & ~stopped[e_j]
        hit = np.zeros(n_m, dtype=bool)
        hit[e_j[raising]] = True
        hit_c = np.full(int(hit.sum()), c)
        level = np.minimum(np.maximum(t_c[c], mins[hit]), dem[hit])
        value[hit] = level
        short = level < dem[hit] - _EPS
        bind[np.flatnonzero(hit)[short]] = hit_c[short]
        stopped[hit] = True
        done_c[c] = True
        dirty = np.zeros(n_c, dtype=bool)
        dirty[e_c[hit[e_j]]] = True
        dirty &= ~done_c
        t = max(t, float(t_c[c]))
    rising = ~stopped
    value[rising] = dem[rising]
    return value, bind
