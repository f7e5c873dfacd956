"""Encryption at rest for API keys (Fernet, keys from settings.AGENTOPS_FERNET_KEY)."""

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class UndecryptableKey(Exception):
    """The stored key was encrypted with a Fernet key this server no longer has."""


def _fernet():
    keys = [k.strip() for k in settings.AGENTOPS_FERNET_KEY.split(",") if k.strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UndecryptableKey(
            "the stored API key cannot be decrypted with AGENTOPS_FERNET_KEY; store it again"
        ) from None


def fingerprint(secret: str) -> str:
    """A stable, one-way name for a key: the same key in two teams shares one bucket."""
    return hashlib.sha256(b"agentops-api-key:" + secret.encode()).hexdigest()[:24]
