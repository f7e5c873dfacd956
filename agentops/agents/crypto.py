"""Secrets at rest (webhook signing secrets): Fernet with a key from settings.

`AGENTOPS_FERNET_KEY` (a Fernet key, or several separated by commas, newest first, to
rotate) when set; otherwise a key derived from SECRET_KEY, so the embedded default works
without configuration. Changing SECRET_KEY without setting AGENTOPS_FERNET_KEY makes
stored secrets unreadable.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret could not be decrypted with the configured keys."""


def _fernet():
    configured = getattr(settings, "AGENTOPS_FERNET_KEY", "") or ""
    keys = [key.strip() for key in configured.split(",") if key.strip()]
    if not keys:
        digest = hashlib.sha256(b"agentops-secrets:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt_secret(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise SecretUnreadable("the secret cannot be decrypted with the configured key") from error
