"""Actions secrets (repository, environment, organization): list, seal and put."""

from __future__ import annotations

import base64
from typing import Any

from nacl.public import PublicKey as NaclPublicKey
from nacl.public import SealedBox

from controlplane import names
from controlplane.github.core import GatewayCore
from controlplane.github.errors import GitHubNotFound, GitHubValidationError
from controlplane.github.paths import segment
from controlplane.github.types import PublicKey, SecretInfo, SecretScope, parse_time


class SecretCalls(GatewayCore):
    def _secrets_url(self, scope: SecretScope, environment: str | None) -> str:
        if scope == "repository":
            return f"{self._repo_url}/actions/secrets"
        if scope == "environment":
            if not environment:
                raise GitHubValidationError("environment secrets need an environment")
            env_segment = segment(names.Kind.ENVIRONMENT, environment)
            return f"{self._repo_url}/environments/{env_segment}/secrets"
        if scope == "organization":
            if not self._org_url:
                raise GitHubValidationError(
                    "organization secrets need the GITHUB_ORGANIZATION setting"
                )
            return f"{self._org_url}/actions/secrets"
        raise GitHubValidationError(f"unknown secret scope {scope!r}")

    def list_secrets(
        self, scope: SecretScope, environment: str | None = None
    ) -> list[SecretInfo]:
        """Names and dates of every secret in the scope (GitHub never returns values)."""
        url = self._secrets_url(scope, environment)
        return [
            SecretInfo(
                name=str(item["name"]),
                created_at=parse_time(item.get("created_at")),
                updated_at=parse_time(item.get("updated_at")),
            )
            # Conditional: secret lists rarely change, and a 304 is free.
            for item in self._pages("list_secrets", url, "secrets", conditional=True)
        ]

    def get_public_key(
        self, scope: SecretScope, environment: str | None = None
    ) -> PublicKey:
        url = f"{self._secrets_url(scope, environment)}/public-key"
        data = self._get("get_public_key", url)
        return PublicKey(key_id=str(data["key_id"]), key=str(data["key"]))

    def put_secret(
        self,
        scope: SecretScope,
        name: str,
        value: str,
        environment: str | None = None,
    ) -> str:
        """Create or replace a secret; returns the id of the key that sealed it.

        The value is sealed here with a public key fetched in this same call and only
        the sealed box leaves the process. It is never logged or put in an error.
        """
        base = self._secrets_url(scope, environment)
        url = f"{base}/{segment(names.Kind.SECRET, name)}"
        key = self.get_public_key(scope, environment)
        box = SealedBox(NaclPublicKey(base64.b64decode(key.key)))
        sealed = base64.b64encode(box.encrypt(value.encode())).decode()
        body: dict[str, Any] = {"encrypted_value": sealed, "key_id": key.key_id}
        if scope == "organization":
            body["visibility"] = self._org_secret_visibility(url)
        with self._call("put_secret"):
            self._requester.requestJsonAndCheck("PUT", url, input=body)
        return key.key_id

    def _org_secret_visibility(self, url: str) -> str:
        # PUT requires a visibility; keep an existing secret's rather than widening or
        # narrowing who can read it as a side effect of a rotation.
        try:
            return str(self._get("put_secret", url).get("visibility") or "private")
        except GitHubNotFound:
            return "private"
