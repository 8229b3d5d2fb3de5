"""``manage.py createuser USERNAME --role viewer|sre|admin``: make a person's account."""

from __future__ import annotations

import secrets
import sys
from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from controlplane import audit
from controlplane.roles import GROUP_NAMES


class Command(BaseCommand):
    help = (
        "Create a user with one role. The password is read from stdin with "
        "--password-stdin, otherwise a random one is generated and printed once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role", required=True, choices=sorted(GROUP_NAMES.values())
        )
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the password from the first line of standard input.",
        )
        parser.add_argument(
            "--if-missing",
            action="store_true",
            help="Do nothing when the user exists already (for set-up scripts).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        role: str = options["role"]
        if User.objects.filter(username=username).exists():
            if options["if_missing"]:
                self.stdout.write(f"User {username!r} exists already.")
                return
            raise CommandError(f"User {username!r} already exists.")
        generated = not options["password_stdin"]
        if generated:
            password = secrets.token_urlsafe(18)
        else:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("No password on standard input.")
        user = User(username=username, email=options["email"])
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("Password rejected: " + " ".join(exc.messages)) from None
        with transaction.atomic():
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=role))
            audit.record("manage.py", "user.create", user, role=role)
        self.stdout.write(f"Created {username} with the {role} role.")
        if generated:
            # Shown this once only: the database keeps just the hash.
            self.stdout.write(f"Password: {password}")
