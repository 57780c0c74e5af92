"""How sagaloom writes payloads and failures: pydantic, quiet failures, optional encryption."""

from sagaloom._encoding._codec import EncryptionCodec, EncryptionKeyError, codec_from_env
from sagaloom._encoding._converter import (
    DATA_CONVERTER,
    EncryptedWithoutKeys,
    QuietFailureConverter,
    converter,
)
from sagaloom._public import publish as _publish

__all__ = [
    "DATA_CONVERTER",
    "EncryptedWithoutKeys",
    "EncryptionCodec",
    "EncryptionKeyError",
    "QuietFailureConverter",
    "codec_from_env",
    "converter",
]

_publish(globals(), __all__, __name__)
