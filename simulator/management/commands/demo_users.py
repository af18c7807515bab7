"""Demo logins for `make run`: operator/operator-demo and support/support-demo.

The demo operator is a member of the demo depot's microgrid only: the second demo depot
(demo_depot_harbour.yaml) exists but is invisible to it, so `make run` shows the isolation
between depots; support staff see both.
"""

from pathlib import Path

import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from microgrid.common.errors import DomainError
from microgrid.topology.services import microgrid_memberships_grant

DEMO = (("operator", "operator-demo", False), ("support", "support-demo", True))
DEMO_PROFILE = Path(settings.BASE_DIR) / "simulator" / "profiles" / "demo_depot.yaml"


def demo_microgrid_id() -> str:
    return yaml.safe_load(DEMO_PROFILE.read_text())["microgrid"]["microgrid_id"]


class Command(BaseCommand):
    help = "Create the demo users (refuses when DEBUG is false); run after loading the demo depot."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("demo users are for DEBUG mode only")
        user_model = get_user_model()
        for username, password, staff in DEMO:
            user, _ = user_model.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = staff
            user.save()
            user.groups.add(Group.objects.get(name=username))
            if username == "operator":
                try:
                    microgrid_memberships_grant(user=user, microgrid_ids=[demo_microgrid_id()])
                except DomainError as exc:
                    raise CommandError(f"{exc.message}: load {DEMO_PROFILE.name} first") from exc
            self.stdout.write(f"login {username} / {password}")
