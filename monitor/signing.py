"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

``webhook-signature: v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>`` with the
key taken from a ``whsec_<base64>`` secret. Written out here (a dozen lines) rather than
taken from the ``standardwebhooks`` package, so that the tests verify our signatures with
that package as an independent implementation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside ``whsec_<base64>``; ValueError says what is wrong."""
    if not secret.startswith(_PREFIX):
        raise ValueError("a webhook secret must look like 'whsec_<base64>'")
    try:
        key = base64.b64decode(secret[len(_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError("the part after 'whsec_' is not valid base64") from exc
    if len(key) < 16:
        raise ValueError("a webhook secret must hold at least 16 bytes of key")
    return key


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    key = decode_secret(secret)
    signed = f"{message_id}.{timestamp}.".encode() + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")
