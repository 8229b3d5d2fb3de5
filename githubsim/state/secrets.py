"""Actions secrets of repositories, their environments and organizations, by scope."""

from __future__ import annotations

from githubsim.errors import not_found
from githubsim.secretstore import Scope, SecretStore
from githubsim.state.core import StateCore


class SecretsMixin(StateCore):
    """One :class:`SecretStore` per scope, created on first use."""

    def _reset_secrets(self) -> None:
        self._secret_stores: dict[Scope, SecretStore] = {}

    def _store(self, scope: Scope) -> SecretStore:
        kind = scope[0]
        if kind in ("repository", "environment"):
            self.repository_id(scope[1])
        elif kind == "organization":
            if scope[1] not in self.organizations:
                raise not_found()
        else:
            raise ValueError(f"unknown secret scope {scope!r}")
        store = self._secret_stores.get(scope)
        if store is None:
            # Environments spring into existence on first use, like a repo admin made them.
            store = self._secret_stores[scope] = SecretStore()
        return store

    def secret_store(self, scope: Scope) -> SecretStore:
        with self.lock:
            return self._store(scope)

    def set_secret(
        self, scope: Scope, name: str, plaintext: str, *, visibility: str | None = None
    ) -> None:
        """Set a secret directly (test and demo setup), as if written outside the app."""
        with self.lock:
            if scope[0] == "organization" and visibility is None:
                visibility = "all"
            self._store(scope).put_plain(name, plaintext, self.clock.now(), visibility)

    def decrypt_secret(self, scope: Scope, name: str) -> str:
        """The plaintext a client sealed into a secret (for test assertions only)."""
        with self.lock:
            return self._store(scope).get(name).plaintext
