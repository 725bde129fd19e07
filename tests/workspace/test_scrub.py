"""scrub(): every secret shape and every secret Corral knows leaves gate output."""

import pytest

from workspace.scrub import REDACTED, scrub

KEY = "k3y-Abcdefghijklmnopqrstuvwxyz-0123456789-SECRET"


@pytest.fixture
def secrets(settings, monkeypatch):
    settings.SECRET_KEY = KEY
    settings.REDIS_URL = "redis://:r3dis-pass@cache.internal:6379/0"
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", "db-pa55word")
    monkeypatch.setenv("DATABASE_URL", "postgres://corral:db-pa55word@db.internal:5432/corral")
    monkeypatch.setenv("REDIS_URL", "redis://:r3dis-pass@cache.internal:6379/0")
    monkeypatch.setenv("CORRAL_ADMIN_PASSWORD", "admin-Hunter2-pw")


def gone(secret, text):
    cleaned = scrub(text)
    assert secret not in cleaned, cleaned
    assert REDACTED in cleaned
    return cleaned


def test_the_secret_key_whole_and_any_twelve_characters_of_it(secrets):
    gone(KEY, f"SECRET_KEY is {KEY}.")
    piece = KEY[7:27]  # 20 characters from the middle: the whole run goes, not 12 of it
    cleaned = gone(piece, f"leaked: {piece} end")
    assert cleaned == f"leaked: {REDACTED} end"
    assert not any(KEY[i : i + 6] in cleaned for i in range(len(KEY) - 6))
    # Eleven characters are ordinary text: too short to be the key.
    assert scrub(f"word {KEY[:11]} word") == f"word {KEY[:11]} word"


def test_the_database_password_and_url(secrets):
    gone(
        "postgres://corral:db-pa55word@db.internal:5432/corral",
        "DATABASE_URL=postgres://corral:db-pa55word@db.internal:5432/corral",
    )
    gone("db-pa55word", "connecting with db-pa55word failed")


def test_the_redis_url_and_its_password(secrets):
    gone("r3dis-pass", "Error connecting to redis://:r3dis-pass@cache.internal:6379/0")
    gone("r3dis-pass", "AUTH r3dis-pass")


def test_the_admin_password(secrets):
    gone("admin-Hunter2-pw", "login admin / admin-Hunter2-pw")


@pytest.mark.parametrize(
    "secret, text",
    [
        (
            "crl_Zq3xYw9vU8tS7rQ6pO5nM4lK3jI2hG1fE0dC",
            "token crl_Zq3xYw9vU8tS7rQ6pO5nM4lK3jI2hG1fE0dC in env",
        ),
        ("crs_Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8", "CORRAL_TOKEN=crs_Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8"),
        ("crp_Pp1Qq2Rr3Ss4Tt5Uu6Vv7Ww8", "ran the import as crp_Pp1Qq2Rr3Ss4Tt5Uu6Vv7Ww8 from CI"),
        (
            "eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        ),
        ("dXNlcjpwYXNzd29yZA==", "Authorization: Basic dXNlcjpwYXNzd29yZA=="),
        ("s3cr3t-pw", "postgres://app:s3cr3t-pw@10.0.0.5:5432/app"),
        ("other-redis-pw", "redis://:other-redis-pw@elsewhere:6379/1"),
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE"),
        (
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
            "x\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
            "-----END PRIVATE KEY-----\ny",
        ),
        (
            "b3BlbnNzaC1rZXktdjEAAAAA",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n(cut short)",
        ),
        ("ghp_0123456789abcdefghijABCDEFGHIJ012345", "GH ghp_0123456789abcdefghijABCDEFGHIJ012345"),
        (
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
            "ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
        ),
        ("hunter2hunter2", 'settings.py: PASSWORD = "hunter2hunter2"'),
        ("tok-9f8e7d6c", '{"api_key": "tok-9f8e7d6c"}'),
    ],
)
def test_credential_shapes(db, secret, text):
    gone(secret, text)


def test_ordinary_check_output_is_left_alone(secrets):
    text = (
        "FAILED tests/test_app.py::test_add - assert 2 == 3\n"
        "commit 0123456789abcdef0123456789abcdef01234567\n"
        "tokenizer: 12 tokens read\n"
        "E   AssertionError: the password field is required\n"
    )
    assert scrub(text) == text


def test_empty_text_stays_empty(secrets):
    assert scrub("") == ""
