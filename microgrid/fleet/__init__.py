"""The fleet overview: every microgrid's live state on one paged, filterable list.

A top-layer app: it reads what the apps below it record (the latest cycle,
open breaches, active envelopes) and writes only its own denormalised row per
microgrid, so that a list of thousands can be filtered, sorted and paged by
the database in a constant number of queries.
"""
