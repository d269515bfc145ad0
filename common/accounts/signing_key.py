"""The platform's own signing key: the JWT secret, which also signs image links (and so must be
the same in the web and worker processes)."""

from __future__ import annotations

import logging
import secrets

from common.infra.settings import Settings

logger = logging.getLogger(__name__)


def jwt_secret(settings: Settings) -> str:
    """The configured secret; in development only, a generated one kept in DATA_DIR."""
    if settings.jwt_secret_key is not None and settings.jwt_secret_key.get_secret_value():
        return settings.jwt_secret_key.get_secret_value()
    # Settings already refused production without a secret, so this is development mode.
    path = settings.data_dir / "dev-jwt-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as handle:  # first process wins, others read it
            handle.write(secrets.token_urlsafe(48))
        path.chmod(0o600)
        logger.warning("JWT_SECRET_KEY is not set: development mode generated %s", path)
    except FileExistsError:
        pass
    return path.read_text(encoding="utf-8").strip()
