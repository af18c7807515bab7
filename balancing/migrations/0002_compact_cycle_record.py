"""Cycles keep one compact record (balancing/record.py) instead of two JSON documents."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def to_records(apps, schema_editor):
    from balancing import record

    Cycle = apps.get_model("balancing", "Cycle")
    Part = apps.get_model("balancing", "CycleRecordPart")
    last_part: dict[int, tuple[str, dict]] = {}
    rows = Cycle.objects.order_by("microgrid_id", "seq").values_list(
        "pk", "microgrid_id", "document", "snapshot"
    )
    for pk, microgrid_id, document, snapshot in rows.iterator(chunk_size=200):
        digest, columns = last_part.get(microgrid_id, (None, None))
        data, new_part = record.encode(document, snapshot, columns)
        if new_part is not None:
            blob = record.encode_part(new_part)
            digest = record.column_hash(blob)
            Part.objects.bulk_create([Part(digest=digest, data=blob)], ignore_conflicts=True)
            last_part[microgrid_id] = (digest, new_part)
        Cycle.objects.filter(pk=pk).update(record=data, record_part_id=digest)


def to_documents(apps, schema_editor):
    from balancing import record

    Cycle = apps.get_model("balancing", "Cycle")
    Part = apps.get_model("balancing", "CycleRecordPart")
    parts = {d: record.decode_part(bytes(b)) for d, b in Part.objects.values_list("digest", "data")}
    for pk, data, digest in Cycle.objects.values_list("pk", "record", "record_part_id").iterator(
        chunk_size=200
    ):
        document, snapshot = record.decode(bytes(data), parts.get(digest))
        Cycle.objects.filter(pk=pk).update(document=document, snapshot=snapshot)


class Migration(migrations.Migration):
    dependencies = [("balancing", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="CycleRecordPart",
            fields=[
                ("digest", models.CharField(max_length=24, primary_key=True, serialize=False)),
                ("data", models.BinaryField()),
                (
                    "created_at",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
            ],
        ),
        migrations.AddField(
            model_name="cycle",
            name="record",
            field=models.BinaryField(
                default=b"",
                editable=False,
                help_text="the cycle as the API returns it and every input replay_cycle needs: "
                "columns, shared columns in record_part, zlib (balancing/record.py)",
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="cycle",
            name="record_part",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="balancing.cyclerecordpart",
            ),
        ),
        migrations.AlterField(
            model_name="cycle",
            name="document",
            field=models.JSONField(null=True, help_text="the cycle as the API returns it"),
        ),
        migrations.AlterField(
            model_name="cycle",
            name="snapshot",
            field=models.JSONField(
                null=True, help_text="every input, so replay_cycle can recompute it"
            ),
        ),
        migrations.RunPython(to_records, to_documents),
        migrations.RemoveField(model_name="cycle", name="document"),
        migrations.RemoveField(model_name="cycle", name="snapshot"),
    ]
