"""The three roles, kept as Django groups (created by a migration).

Each role includes the ones below it: an admin can do what an SRE can, an SRE what a
viewer can. Superusers count as admins.
"""

from __future__ import annotations

from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, User
from django.db import models


class Role(models.IntegerChoices):
    NONE = 0, "none"
    VIEWER = 1, "viewer"
    SRE = 2, "sre"
    ADMIN = 3, "admin"


GROUP_NAMES = {Role.VIEWER: "viewer", Role.SRE: "sre", Role.ADMIN: "admin"}


def role_of(user: User | AnonymousUser) -> Role:
    """The highest role the user holds (cached on the user object per request)."""
    if not user.is_authenticated or not user.is_active:
        return Role.NONE
    cached: Role | None = getattr(user, "_controlplane_role", None)
    if cached is not None:
        return cached
    if getattr(user, "is_superuser", False):
        role = Role.ADMIN
    else:
        names = set(user.groups.values_list("name", flat=True))
        role = max(
            (r for r, name in GROUP_NAMES.items() if name in names), default=Role.NONE
        )
    setattr(user, "_controlplane_role", role)  # noqa: B010
    return Role(role)


def has_role(user: User | AnonymousUser, needed: Role) -> bool:
    return role_of(user) >= needed


class AdminRoleBackend(BaseBackend):
    """Gives the admin role every model permission, so admins can use the Django
    admin site without per-model permission rows (which would have to be granted
    again for each new model). Authenticates nobody itself."""

    def has_perm(
        self, user_obj: AbstractBaseUser | AnonymousUser, perm: str, obj: object = None
    ) -> bool:
        return isinstance(user_obj, User) and has_role(user_obj, Role.ADMIN)

    def has_module_perms(
        self, user_obj: AbstractBaseUser | AnonymousUser, app_label: str
    ) -> bool:
        return isinstance(user_obj, User) and has_role(user_obj, Role.ADMIN)
