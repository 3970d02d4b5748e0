"""The receipts' Ed25519 key (the `cryptography` library).

TALLY_SIGNING_KEY holds the private key's 32 raw bytes in URL-safe base64 (`flask tally
keygen` makes one). The public key is published at `/public/tally-key` as the same kind of
base64, with `key_id`, the first 16 hex digits of its SHA-256, which every receipt names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat


class KeyMissing(RuntimeError):
    """No usable TALLY_SIGNING_KEY; the message says what to do."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4))


def new_private_key() -> str:
    """A new signing key, as TALLY_SIGNING_KEY holds it."""
    raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return b64(raw)


def private_key(setting: str) -> Ed25519PrivateKey:
    """The key TALLY_SIGNING_KEY holds; KeyMissing when it is unset or not a key."""
    if not setting:
        raise KeyMissing(
            "TALLY_SIGNING_KEY is not set: make one with `flask tally keygen` (no receipt is made without)"
        )
    try:
        raw = unb64(setting.strip())
        if len(raw) != 32:
            raise ValueError
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, binascii.Error):
        raise KeyMissing("TALLY_SIGNING_KEY is not a key `flask tally keygen` made (32 bytes in base64)") from None


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return b64(key.sign(message))


def signature_holds(public: bytes, message: bytes, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(unb64(signature), message)
        return True
    except (InvalidSignature, ValueError, binascii.Error):
        return False
