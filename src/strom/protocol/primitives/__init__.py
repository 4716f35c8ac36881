"""Kafka wire primitives: a bounds-checked `Reader` and a chunk-collecting `Writer`.

`reader.py` decodes and `writer.py` encodes the primitive types of Kafka's protocol; each
module's docstring states the encodings and the invariants it keeps. This package is the import
path for both: the generated codecs in `strom.protocol.messages` and the coordinators'
`generated/` packages (hundreds of modules) import `ProtocolError`, `Reader`, `Writer` and
`ZERO_UUID` from here, so the names are re-exported rather than those imports rewritten.
"""

from strom.protocol.errors import ProtocolError
from strom.protocol.primitives.reader import ZERO_UUID, Reader
from strom.protocol.primitives.writer import ZERO_COPY_MIN, Writer

__all__ = ["ZERO_COPY_MIN", "ZERO_UUID", "ProtocolError", "Reader", "Writer"]
