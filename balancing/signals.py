"""Signals the balancing app sends; apps above it (dispatch, ocpp) connect to them.

- `cycle_stored(sender=Cycle, cycle, limits, budgets)`: inside the cycle's own
  transaction, after the cycle row is written, with the setpoints it hands out
  (`balancing.dispatch.ChargingLimit` and `ScopeBudget`). A receiver that writes
  (the dispatch outbox) writes in that transaction, so the cycle and what it
  sends commit or roll back together; a receiver that raises undoes the cycle.
  Side effects belong in `transaction.on_commit`.
- `cycle_document_read(sender=Cycle, cycle, document)`: when the API or a page
  reads a cycle document; receivers add what they own to `document` in place
  (the dispatch app adds `dispatch` and each charger's `dispatch_status`).
"""

from django.dispatch import Signal

cycle_stored = Signal()
cycle_document_read = Signal()
