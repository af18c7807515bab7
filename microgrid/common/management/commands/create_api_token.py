"""Create (if needed) a user in a role and print a new API token key alone on stdout."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from microgrid.common.models import ApiToken
from microgrid.common.roles import ALL_ROLES


class Command(BaseCommand):
    help = "Create USERNAME if missing, add it to --role and print a new API token key."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ALL_ROLES, required=True)
        parser.add_argument("--name", default="", help="a label for the token")

    def handle(self, *args, username, role, name, **options):
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
            if role == "support" and not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
            _, key = ApiToken.issue(user=user, name=name or f"cli:{role}")
        self.stdout.write(key)
