"""Signed verification tokens of the book documents (README "Verifying a printed book").

A token is `HB1.<payload>.<signature>`: the payload is compact JSON (base64url) naming what the
document is (the citizen, the encounter version for an examination record), when it was issued and
the SHA-256 digest of the content it shows; the signature is Ed25519 over the payload bytes.

The signing key is a setting, never kept in the warehouse: HEALTHBOOK_SIGNING_KEY (hex of the
32-byte Ed25519 private key) wins, then the file named by HEALTHBOOK_SIGNING_KEY_FILE, then a
per-user key file created on first use (the laptop default, as for the pseudonym key). Anyone who
checks documents needs only the public key (HEALTHBOOK_VERIFY_KEY, hex), which the signing key
also gives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DEFAULT_SIGNING_KEY_FILE = Path.home() / ".config" / "healthbook" / "signing.key"
PREFIX = "HB1"


class KeyInsideWarehouse(RuntimeError):
    """The signing key file lies inside the warehouse, where it must never be."""


class InvalidToken(ValueError):
    """A token that is malformed, or whose signature does not verify."""


def content_digest(content) -> str:
    """SHA-256 (hex) of a JSON-able value in canonical form (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(
        content, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def signing_key(warehouse_root: Path | None = None) -> Ed25519PrivateKey:
    """The Ed25519 signing key from the settings (module docstring); created on first use."""
    if value := os.environ.get("HEALTHBOOK_SIGNING_KEY"):
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(value.strip()))
    path = Path(os.environ.get("HEALTHBOOK_SIGNING_KEY_FILE") or DEFAULT_SIGNING_KEY_FILE)
    if warehouse_root is not None and path.resolve().is_relative_to(Path(warehouse_root).resolve()):
        raise KeyInsideWarehouse("the signing key file must not live inside the warehouse")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))


def verify_key(warehouse_root: Path | None = None) -> Ed25519PublicKey:
    """The public key documents are checked with: HEALTHBOOK_VERIFY_KEY, else the signing key's."""
    if value := os.environ.get("HEALTHBOOK_VERIFY_KEY"):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(value.strip()))
    return signing_key(warehouse_root).public_key()


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def key_id(key: Ed25519PublicKey) -> str:
    """A short name of the key (first 8 hex digits of the SHA-256 of the public key), for rotation."""
    return hashlib.sha256(bytes.fromhex(public_hex(key))).hexdigest()[:8]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: dict, key: Ed25519PrivateKey) -> str:
    """The token for `payload` (a flat JSON-able dict); the key id is added as "k"."""
    body = dict(payload, k=key_id(key.public_key()))
    data = json.dumps(body, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode("ascii")
    return f"{PREFIX}.{_b64(data)}.{_b64(key.sign(data))}"


@dataclass(frozen=True)
class Token:
    payload: dict
    text: str


def open_token(text: str, key: Ed25519PublicKey) -> Token:
    """The payload of a token whose signature verifies with `key`; InvalidToken otherwise."""
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidToken("not a healthbook verification token")
    try:
        data, signature = _unb64(parts[1]), _unb64(parts[2])
    except ValueError as e:
        raise InvalidToken("the token is not valid base64url") from e
    try:
        key.verify(signature, data)
    except InvalidSignature as e:
        raise InvalidToken("the signature does not verify with the healthbook public key") from e
    try:
        payload = json.loads(data)
    except ValueError as e:  # signed but unreadable: not one of ours
        raise InvalidToken("the signed payload is not JSON") from e
    if not isinstance(payload, dict):
        raise InvalidToken("the signed payload is not an object")
    return Token(payload, text.strip())
