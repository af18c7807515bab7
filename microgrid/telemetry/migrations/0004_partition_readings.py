"""PostgreSQL: telemetry readings partitioned by day on observed_at (issue 18), so that the
retention task drops whole days (microgrid/common/partitions.py). SQLite keeps a plain table;
Django's model state does not change (the primary key in the database becomes
(id, observed_at), which the model does not need to know: ids stay unique)."""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

from microgrid.common.partitions import partition_table


def forwards(apps, schema_editor):
    partition_table(
        schema_editor,
        "telemetry_telemetryreading",
        "observed_at",
        now=timezone.now(),
        behind=max(1, settings.TELEMETRY_RETENTION_HOURS // 24 + 1),
        ahead=settings.TELEMETRY_PARTITION_DAYS_AHEAD,
    )


class Migration(migrations.Migration):
    atomic = True

    dependencies = [("telemetry", "0003_phase_currents")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]
