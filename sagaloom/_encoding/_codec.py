"""Optional payload encryption: AES-GCM with a key id in each payload, and key rotation.

Keys come from ``SAGALOOM_ENCRYPTION_KEYS="<id>=<base64 key>,<id>=<base64 key>"`` (16, 24 or
32-byte keys). The first key encrypts; every listed key decrypts, so rotating is: put the new
key first, keep the old ones until no history needs them. Clients and workers must share the
keys. Search attributes and workflow ids are never encrypted (Temporal indexes them).

The Web UI decodes through a codec endpoint: ``saga codec-server`` serves ``/decode`` (and
``/encode``) for ``temporal server start-dev --ui-codec-endpoint http://localhost:8888``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from sagaloom._encoding._converter import ENCRYPTED

__all__ = ["ENCODING", "KEY_ID", "EncryptionCodec", "EncryptionKeyError", "codec_from_env"]

log = logging.getLogger("sagaloom.codec")

ENCODING = ENCRYPTED.encode()
"""``encoding`` metadata of an encrypted payload."""
KEY_ID = "encryption-key-id"
"""Metadata naming the key that encrypted a payload."""


class EncryptionKeyError(ValueError):
    """The key configuration is invalid, or a payload names a key that is not configured."""


class EncryptionCodec(PayloadCodec):
    """Encrypts every payload with the current key; decrypts with whichever key it names."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """Create a codec; the first ``(id, key)`` encrypts, all decrypt.

        Raises:
            EncryptionKeyError: for no keys, a duplicate id or a key of the wrong length.
        """
        if not keys:
            raise EncryptionKeyError("at least one encryption key is needed")
        self._keys: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if key_id in self._keys:
                raise EncryptionKeyError(f"duplicate encryption key id {key_id!r}")
            if len(key) not in (16, 24, 32):
                raise EncryptionKeyError(f"encryption key {key_id!r} must be 16, 24 or 32 bytes")
            self._keys[key_id] = AESGCM(key)
        self.current = keys[0][0]
        """Id of the key that encrypts."""
        self._warned = False

    @classmethod
    def from_spec(cls, spec: str) -> EncryptionCodec:
        """Parse ``"<id>=<base64 key>,..."`` (the ``SAGALOOM_ENCRYPTION_KEYS`` format)."""
        keys: list[tuple[str, bytes]] = []
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key_id, sep, encoded = item.partition("=")
            if not sep or not key_id:
                raise EncryptionKeyError("SAGALOOM_ENCRYPTION_KEYS: expected <id>=<base64 key>,...")
            try:
                keys.append((key_id, base64.b64decode(encoded, validate=True)))
            except binascii.Error:
                raise EncryptionKeyError(
                    f"SAGALOOM_ENCRYPTION_KEYS: key {key_id!r} is not base64"
                ) from None
        return cls(keys)

    @staticmethod
    def new_key() -> str:
        """A fresh random 256-bit key, base64-encoded."""
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload (its metadata and data) with the current key."""
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads; pass others through unchanged."""
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(12)
        key_id = self.current
        sealed = self._keys[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            if not self._warned:  # once per process: a party without keys is writing
                self._warned = True
                log.warning(
                    "a payload arrived unencrypted though this process has encryption keys: a "
                    "client or worker without SAGALOOM_ENCRYPTION_KEYS is writing plaintext "
                    "into history (set the same keys on every client and worker)"
                )
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode()
        aes = self._keys.get(key_id)
        if aes is None:
            raise EncryptionKeyError(f"payload encrypted with unknown key {key_id!r}")
        plain = aes.decrypt(payload.data[:12], payload.data[12:], key_id.encode())
        return Payload.FromString(plain)


def codec_from_env(env: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    """The codec configured by ``SAGALOOM_ENCRYPTION_KEYS``, if any.

    The one reader of the variable: ``SagaloomPlugin()``, ``sagaloom.client.connect()``, the
    ``saga`` command and ``saga worker`` all take their keys here.

    Raises:
        EncryptionKeyError: the variable is set but malformed (it names the variable).
    """
    spec = (os.environ if env is None else env).get("SAGALOOM_ENCRYPTION_KEYS", "")
    return EncryptionCodec.from_spec(spec) if spec.strip() else None
