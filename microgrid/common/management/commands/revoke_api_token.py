"""Revoke API tokens by their key prefix (as admin shows it) or every token of a user."""

from django.core.management.base import BaseCommand, CommandError

from microgrid.common.models import ApiToken, hash_token
from microgrid.common.services import api_tokens_revoke

PREFIX_LENGTH = ApiToken._meta.get_field("key_prefix").max_length


class Command(BaseCommand):
    help = (
        "Revoke API tokens: TARGET is a key prefix (the first 8 characters, as admin lists "
        "them), a whole key, or a username (all of that user's tokens)."
    )

    def add_arguments(self, parser):
        parser.add_argument("target", help="KEY_PREFIX, a whole key, or USERNAME")
        parser.add_argument(
            "--by",
            choices=("auto", "prefix", "user"),
            default="auto",
            help="what TARGET is; auto refuses a TARGET that is both a prefix and a username",
        )

    def handle(self, *args, target, by, **options):
        by_prefix = ApiToken.objects.none()
        if by in ("auto", "prefix"):
            if len(target) > PREFIX_LENGTH:  # a whole (leaked) key
                by_prefix = ApiToken.objects.filter(key_hash=hash_token(target))
            else:
                by_prefix = ApiToken.objects.filter(key_prefix=target)
        by_user = (
            ApiToken.objects.filter(user__username=target)
            if by in ("auto", "user")
            else ApiToken.objects.none()
        )
        if by == "auto" and by_prefix.exists() and by_user.exists():
            raise CommandError(
                f"{target!r} is both a key prefix and a username: say which with "
                "--by prefix or --by user"
            )
        matched = list((by_prefix if by_prefix.exists() else by_user).select_related("user"))
        if not matched:
            raise CommandError(f"no API token matches {target!r}")
        revoked = api_tokens_revoke(tokens=matched)
        for token in revoked:
            self.stdout.write(f"revoked {token.key_prefix}… of {token.user} ({token.name or '-'})")
        if not revoked:
            self.stdout.write(f"every token matching {target!r} was already revoked")
