"""Signals the balancing app sends; apps above it (dispatch, ocpp) connect to them.

- `cycle_stored(sender=Cycle, cycle, limits, budgets)`: inside the cycle's own
  transaction, after the cycle row is written, with the setpoints it hands out
  (`balancing.dispatch.ChargingLimit` and `ScopeBudget`). A receiver that writes
  (the dispatch outbox) writes in that transaction, so the cycle and what it
  sends commit or roll back together; a receiver that raises undoes the cycle.
  Side effects belong in `transaction.on_commit`.
- `cycles_created(sender=Cycle, cycles)`: inside the transaction, after several cycles were
  written with one INSERT (a batch of scheduled cycles, balancing/batch.py), which sends no
  `post_save`: a receiver that keeps something per stored cycle (the fleet overview's state)
  writes it for all of them, as it does on `post_save` for a cycle saved on its own.
- `cycle_document_read(sender=Cycle, cycle, document)`: when the API or a page
  reads a cycle document; receivers add what they own to `document` in place
  (the dispatch app adds `dispatch` and each charger's `dispatch_status`).
- `cycles_maintaining(now)`: sent by the maintenance run (`balancing.lifecycle.cycle_maintain`)
  before compaction, outside any transaction; a receiver settles what it keeps naming old
  cycles (dispatch prunes its settled rows past DISPATCH_RETENTION_HOURS), bounded per run,
  so those cycles compact in the same run, and answers `{step name: rows handled}`.
"""

from django.dispatch import Signal

cycle_stored = Signal()
cycles_created = Signal()
cycle_document_read = Signal()
cycles_maintaining = Signal()
