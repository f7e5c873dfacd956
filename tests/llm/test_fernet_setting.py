"""AGENTOPS_FERNET_KEY: required in production, validated, derived in the embedded default."""

import pytest

from tests.test_settings import PRODUCTION, _manage


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "AGENTOPS_FERNET_KEY is required when DJANGO_DEBUG=0"),
        ("not-a-fernet-key", "AGENTOPS_FERNET_KEY must be 32 url-safe base64-encoded bytes"),
    ],
)
def test_production_needs_a_valid_fernet_key(value, message):
    env = {k: v for k, v in PRODUCTION.items() if k != "AGENTOPS_FERNET_KEY"}
    if value is not None:
        env["AGENTOPS_FERNET_KEY"] = value
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert f"agentops: configuration error: {message}" in result.stderr


def test_several_keys_rotate(settings):
    from cryptography.fernet import Fernet

    from agentops.llm.crypto import decrypt, encrypt

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.AGENTOPS_FERNET_KEY = old
    token = encrypt("sk-ant-secret-value-123456")
    settings.AGENTOPS_FERNET_KEY = f"{new},{old}"
    assert decrypt(token) == "sk-ant-secret-value-123456"
    settings.AGENTOPS_FERNET_KEY = new
    from agentops.llm.crypto import UndecryptableKey

    with pytest.raises(UndecryptableKey) as caught:
        decrypt(token)
    assert "sk-ant" not in str(caught.value)


def test_embedded_default_derives_a_key(settings):
    # With DEBUG on and no variable, settings derived a valid key from SECRET_KEY.
    from cryptography.fernet import Fernet

    Fernet(settings.AGENTOPS_FERNET_KEY.encode())
