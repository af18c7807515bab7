"""Demo logins for `make run`: operator/operator-demo and support/support-demo."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

DEMO = (("operator", "operator-demo", False), ("support", "support-demo", True))


class Command(BaseCommand):
    help = "Create the demo users (refuses when DEBUG is false)."

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
            self.stdout.write(f"login {username} / {password}")
