"""Actions secrets per scope, each scope with its own libsodium key pair, like GitHub's."""

from __future__ import annotations

import base64
import binascii
import secrets as random_tokens
from dataclasses import dataclass, field

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from githubsim.errors import ApiError, invalid, not_found
from githubsim.models import Secret

# ("repository", "acme/deploy"), ("environment", "acme/deploy", "production") or
# ("organization", "acme").
Scope = tuple[str, ...]

VISIBILITIES = ("all", "private", "selected")


def repository_scope(full_name: str) -> Scope:
    return ("repository", full_name)


def environment_scope(full_name: str, environment: str) -> Scope:
    return ("environment", full_name, environment)


def organization_scope(org: str) -> Scope:
    return ("organization", org)


@dataclass
class SecretStore:
    """The secrets of one scope and the key pair clients seal values with."""

    private_key: PrivateKey = field(default_factory=PrivateKey.generate)
    key_id: str = field(
        default_factory=lambda: str(random_tokens.randbelow(10**18) + 10**17)
    )
    secrets: dict[str, Secret] = field(default_factory=dict)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(bytes(self.private_key.public_key)).decode()

    def put_sealed(
        self,
        name: str,
        encrypted_value: object,
        key_id: object,
        now: float,
        visibility: str | None,
    ) -> bool:
        """Store a sealed value; True when the secret is new (GitHub answers 201)."""
        if not isinstance(encrypted_value, str) or not encrypted_value:
            raise invalid(
                "Invalid request: encrypted_value is missing", "encrypted_value"
            )
        if not isinstance(key_id, str) or key_id != self.key_id:
            # A stale key_id means the client sealed with a key GitHub no longer holds.
            raise invalid(
                "Bad request: key_id does not match the current key", "key_id"
            )
        try:
            sealed = base64.b64decode(encrypted_value, validate=True)
            plaintext = SealedBox(self.private_key).decrypt(sealed).decode()
        except (binascii.Error, CryptoError, UnicodeDecodeError, ValueError):
            raise invalid(
                "Bad request: encrypted_value could not be decrypted", "encrypted_value"
            ) from None
        return self.put_plain(name, plaintext, now, visibility)

    def put_plain(
        self, name: str, plaintext: str, now: float, visibility: str | None
    ) -> bool:
        key = name.upper()
        existing = self.secrets.get(key)
        if existing is None:
            self.secrets[key] = Secret(key, now, now, plaintext, visibility)
            return True
        existing.plaintext = plaintext
        # Distinct timestamps per write keep "was it rotated?" checks honest.
        existing.updated_at = max(now, existing.updated_at + 1)
        if visibility is not None:
            existing.visibility = visibility
        return False

    def get(self, name: str) -> Secret:
        secret = self.secrets.get(name.upper())
        if secret is None:
            raise not_found()
        return secret

    def delete(self, name: str) -> None:
        if self.secrets.pop(name.upper(), None) is None:
            raise not_found()


def check_visibility(value: object, required: bool) -> str | None:
    if value is None and not required:
        return None
    if value not in VISIBILITIES:
        raise ApiError(
            422,
            "Invalid request: visibility must be one of all, private, selected",
            [{"resource": "Secret", "field": "visibility", "code": "invalid"}],
        )
    return str(value)
