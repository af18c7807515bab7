"""PostgreSQL: cycle blocks partitioned by UTC day of started_from (issue 18), so that the
maintenance drops whole days past CYCLE_RETENTION_DAYS (microgrid/common/partitions.py, as
telemetry.0004). Nothing has a foreign key to a block, so the table may be partitioned;
cycle rows (recent or referenced) stay a plain table. SQLite keeps a plain table; Django's
model state does not change (in the database the primary key becomes (id, started_from) and
the unique (microgrid, first_seq) becomes (microgrid, first_seq, started_from): ids stay
unique, and a block's cycles, hence its first_seq and started_from, are compacted once)."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

from microgrid.common.partitions import partition_table


def forwards(apps, schema_editor):
    partition_table(
        schema_editor,
        "balancing_cycleblock",
        "started_from",
        now=timezone.now(),
        behind=settings.CYCLE_RETENTION_DAYS + 1,
        ahead=settings.CYCLE_PARTITION_DAYS_AHEAD,
    )


class Migration(migrations.Migration):
    atomic = True

    dependencies = [("balancing", "0013_cycle_blocks")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]
