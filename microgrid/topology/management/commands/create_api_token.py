"""Create (if needed) a user in a role, give it microgrids, and print a new API token key
alone on stdout.

It lives in topology, not common, because memberships name microgrids (common knows none).
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from microgrid.common.errors import DomainError
from microgrid.common.models import ApiToken
from microgrid.common.roles import ALL_ROLES, SUPPORT
from microgrid.topology.services import microgrid_memberships_grant


class Command(BaseCommand):
    help = (
        "Create USERNAME if missing, add it to --role, make it a member of each --microgrid "
        "(or of all with --all-microgrids) and print a new API token key. A user without a "
        "membership reaches no microgrid (support staff reach every one)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ALL_ROLES, required=True)
        parser.add_argument("--name", default="", help="a label for the token")
        parser.add_argument(
            "--microgrid",
            action="append",
            default=[],
            metavar="ID",
            dest="microgrids",
            help="a microgrid the user may reach (repeat for more)",
        )
        parser.add_argument(
            "--all-microgrids",
            action="store_true",
            help="every microgrid, present and future (a fleet system)",
        )

    def handle(self, *args, username, role, name, microgrids, all_microgrids, **options):
        if microgrids and all_microgrids:
            raise CommandError("give --microgrid or --all-microgrids, not both")
        user_model = get_user_model()
        with transaction.atomic():
            user, created = user_model.objects.get_or_create(username=username)
            if created:
                user.set_unusable_password()
                user.save()
            try:
                group = Group.objects.get(name=role)
            except Group.DoesNotExist as exc:
                raise CommandError(f"role {role!r} does not exist: run migrate first") from exc
            user.groups.add(group)
            if role == SUPPORT and not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
            try:
                microgrid_memberships_grant(
                    user=user, microgrid_ids=microgrids, all_microgrids=all_microgrids
                )
            except DomainError as exc:
                raise CommandError(exc.message) from exc
            if role != SUPPORT and not user.microgrid_memberships.exists():
                self.stderr.write(
                    f"note: {username} has no microgrid membership and reaches no microgrid; "
                    "give --microgrid ID or --all-microgrids"
                )
            _, key = ApiToken.issue(user=user, name=name or f"cli:{role}")
        self.stdout.write(key)
