"""``manage.py issuetoken USERNAME [--ttl-days N]``: an API token for a user."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from knox.models import AuthToken

from controlplane import audit
from controlplane.roles import Role, role_of


class Command(BaseCommand):
    help = (
        "Issue an API token for USERNAME and print it once; only its digest is "
        "stored. Use it as 'Authorization: Token <token>'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--ttl-days",
            type=int,
            default=None,
            help="Days until the token expires (default: API_TOKEN_TTL_DAYS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = User.objects.get(username=options["username"], is_active=True)
        except User.DoesNotExist:
            raise CommandError(f"No active user {options['username']!r}.") from None
        ttl_days: int | None = options["ttl_days"]
        if ttl_days is not None and ttl_days < 1:
            raise CommandError("--ttl-days must be at least 1.")
        ttl = (
            timedelta(days=ttl_days)
            if ttl_days is not None
            else settings.REST_KNOX["TOKEN_TTL"]
        )
        instance, token = AuthToken.objects.create(user, ttl)
        # The audit row names the token by its public key prefix, never the token.
        audit.record(
            "manage.py",
            "api_token.issue",
            user,
            token_key=instance.token_key,
            expiry=instance.expiry.isoformat() if instance.expiry else None,
        )
        role = role_of(user)
        if role == Role.NONE:
            self.stderr.write(
                f"Warning: {user.username} has no role; the API will refuse the token."
            )
        self.stdout.write(token)
        self.stderr.write(
            f"Token for {user.username} ({role.label}), expires "
            f"{instance.expiry:%Y-%m-%d %H:%M} UTC. It is shown only this once."
        )
