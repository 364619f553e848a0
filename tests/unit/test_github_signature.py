"""GitHub's X-Hub-Signature-256 check, against GitHub's own documented test vector."""

import hashlib
import hmac

from app.hooks import github

# From GitHub's "Validating webhook deliveries" page.
SECRET = "It's a Secret to Everybody"
PAYLOAD = b"Hello, World!"
SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_documented_test_vector_is_accepted() -> None:
    assert github.signature_valid(SECRET, PAYLOAD, SIGNATURE)


def test_uppercase_hex_is_accepted() -> None:
    assert github.signature_valid(SECRET, PAYLOAD, "sha256=" + SIGNATURE[7:].upper())


def test_wrong_secret_body_or_header_is_refused() -> None:
    assert not github.signature_valid("another secret", PAYLOAD, SIGNATURE)
    assert not github.signature_valid(SECRET, PAYLOAD + b" ", SIGNATURE)
    assert not github.signature_valid(SECRET, PAYLOAD, None)
    assert not github.signature_valid(SECRET, PAYLOAD, "")
    assert not github.signature_valid(SECRET, PAYLOAD, SIGNATURE[7:])  # no sha256= prefix
    legacy = "sha1=" + hmac.new(SECRET.encode(), PAYLOAD, hashlib.sha1).hexdigest()
    assert not github.signature_valid(SECRET, PAYLOAD, legacy)
