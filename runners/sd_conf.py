"""Settings of Prometheus service discovery (``/sd/exporters``), from the
environment.

Read through the accessors below, which prefer a Django setting of the same name,
so tests and deployments can override them either way. (They live here rather than
in ``controlplane/settings.py``, which is at its size limit.)
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# A token shorter than this is refused as a configuration mistake: Prometheus
# sends it on every refresh, so it must be a long random value
# (``openssl rand -hex 32``).
MIN_TOKEN_LENGTH = 16

# The bearer token Prometheus sends to /sd/exporters: SD_BEARER_TOKEN, or the file
# named by SD_BEARER_TOKEN_FILE (a Docker secret). The file is read on each request,
# so replacing it rotates the token without a restart. Neither set: the endpoint is
# off (403).
_TOKEN = os.getenv("SD_BEARER_TOKEN", "")
_TOKEN_FILE = os.getenv("SD_BEARER_TOKEN_FILE", "")
if _TOKEN and len(_TOKEN.strip()) < MIN_TOKEN_LENGTH:
    raise ImproperlyConfigured(
        f"SD_BEARER_TOKEN must be at least {MIN_TOKEN_LENGTH} characters "
        "(e.g. openssl rand -hex 32)"
    )


class TokenUnavailable(Exception):
    """The token file is set but cannot be used; the message says why (never the
    token)."""


def token_file() -> str:
    return str(getattr(settings, "SD_BEARER_TOKEN_FILE", _TOKEN_FILE))


def bearer_token() -> str:
    """The service discovery token ("" when discovery is off). The file, when set,
    wins over the variable, as for the other ``*_FILE`` secrets."""
    path = token_file()
    if not path:
        return str(getattr(settings, "SD_BEARER_TOKEN", _TOKEN)).strip()
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise TokenUnavailable(
            f"SD_BEARER_TOKEN_FILE ({path}) cannot be read: {exc.strerror}"
        ) from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenUnavailable(
            f"the token in SD_BEARER_TOKEN_FILE ({path}) is shorter than "
            f"{MIN_TOKEN_LENGTH} characters"
        )
    return token
