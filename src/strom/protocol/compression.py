"""Compression codecs of record batch v2, through ``cramjam`` (and ``zlib`` for gzip).

Codec ids are the low three bits of a batch's attributes: 0 none, 1 gzip, 2 snappy, 3 lz4,
4 zstd; 5-7 are unassigned and raise :class:`UnknownCodecError`.

What each codec looks like inside a Kafka batch, and what we accept:

- gzip: an RFC 1952 gzip stream (the Java client uses ``GZIPOutputStream``). Several concatenated
  members are accepted, as Java's ``GZIPInputStream`` does.
- snappy: two layouts exist in the wild. The Java client writes snappy-java's "xerial" stream::

      magic  b"\\x82SNAPPY\\x00"     8 bytes
      version            int32 BE  (1)
      compatible version int32 BE  (1)
      then repeated:  length int32 BE, then that many bytes of one raw snappy block

  librdkafka may write one raw snappy block (a varint uncompressed length, then the
  compressed stream). Like snappy-java, we treat input that starts with the xerial magic as
  xerial and anything else as one raw block. We write xerial with 32 KiB blocks, which is what
  snappy-java itself writes, so every consumer reads it.
- lz4: the LZ4 *frame* format (magic 0x184D2204 little endian). Kafka's Java reader
  (``Lz4BlockInputStream``) accepts only: FLG version 01, the two reserved FLG bits 0 (so no
  dictionary id), block independence set, BD block size id 4..7 (64 KiB..4 MiB), reserved BD bits
  0, and a correct header checksum byte; content size, block checksums and content checksum are
  all optional. It decompresses every block on its own, which is why dependent ("linked") blocks
  are refused. We write independent 64 KiB blocks with block and content checksums and no
  content size (FLG 0x74, BD 0x40), which that reader accepts. Our reader uses the full lz4
  frame decoder (checksums verified), so it accepts all of the above and also linked blocks.
- zstd: one or more zstd frames, with or without the frame content size (zstd-jni, used by the
  Java client, streams and omits it; librdkafka compresses in one shot and sets it). Skippable
  frames are skipped.

Bounding the output. ``decompress`` refuses to produce more than ``max_size`` bytes, so a small
"zip bomb" in a produce request cannot exhaust memory:

- gzip: ``zlib.decompressobj`` with ``max_length``, exact.
- snappy: every raw block states its uncompressed length up front; the lengths are summed and
  checked before anything is decompressed, exact.
- lz4 and zstd: cramjam's one-shot decoders have no output limit, but ``decompress_into`` stops
  with an error as soon as the given buffer is full (checked: a 2 GiB zstd bomb into a 1 MiB
  buffer fails in well under a millisecond without growing the process). So the frame and block
  headers are scanned first (cheap, no decompression) for an upper bound of the output: the
  declared content size when the frame has one (the decoders verify it), otherwise per block its
  stored size for an uncompressed / RLE block, or the largest a compressed block may decode to
  (the frame's block maximum for lz4, 128 KiB for zstd). Output is decompressed into a buffer of
  that size (never more than ``max_size``). Encoders fill every block but the last, so without a
  content size the bound is at most one block maximum per frame too high: a bound within that
  slack of the limit is decompressed into a ``max_size`` buffer and refused only if it fills
  it (exact); a bound beyond it is refused at once, without decompressing. Only a frame made of
  many part-filled compressed blocks whose total is near the limit could be refused wrongly.

Errors. Everything raises :class:`CompressionError` subclasses carrying the Kafka error code the
broker should answer with: ``UnknownCodecError`` -> 76 UNSUPPORTED_COMPRESSION_TYPE, every
other failure (malformed data, output over the limit) -> 2 CORRUPT_MESSAGE.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Final

import cramjam

__all__ = [
    "CODEC_GZIP",
    "CODEC_LZ4",
    "CODEC_NAMES",
    "CODEC_NONE",
    "CODEC_SNAPPY",
    "CODEC_ZSTD",
    "DEFAULT_MAX_DECOMPRESSED",
    "LEVEL_DEFAULTS",
    "CompressionError",
    "DecompressedTooLargeError",
    "UnknownCodecError",
    "compress",
    "decompress",
]

CODEC_NONE: Final = 0
CODEC_GZIP: Final = 1
CODEC_SNAPPY: Final = 2
CODEC_LZ4: Final = 3
CODEC_ZSTD: Final = 4
CODEC_NAMES: Final[dict[int, str]] = {
    CODEC_NONE: "none",
    CODEC_GZIP: "gzip",
    CODEC_SNAPPY: "snappy",
    CODEC_LZ4: "lz4",
    CODEC_ZSTD: "zstd",
}

# Kafka's default level of each codec that has levels (KIP-390).
LEVEL_DEFAULTS: Final[dict[int, int]] = {CODEC_GZIP: -1, CODEC_LZ4: 9, CODEC_ZSTD: 3}

# Default ceiling of one batch's decompressed size. Kafka's message.max.bytes (1 MiB by default)
# bounds the compressed size only; 64 MiB leaves room for very compressible data.
DEFAULT_MAX_DECOMPRESSED: Final = 64 * 1024 * 1024

# Kafka error codes (plain ints: this module sits below protocol/errors.py).
_CORRUPT_MESSAGE: Final = 2
_UNSUPPORTED_COMPRESSION_TYPE: Final = 76

Buffer = bytes | bytearray | memoryview


class CompressionError(Exception):
    """Data could not be (de)compressed. ``error_code`` is the Kafka code to answer with."""

    error_code: int = _CORRUPT_MESSAGE


class UnknownCodecError(CompressionError):
    """The codec id is not one of 0-4."""

    error_code = _UNSUPPORTED_COMPRESSION_TYPE


class DecompressedTooLargeError(CompressionError):
    """The decompressed data would exceed the caller's limit."""


# --------------------------------------------------------------------------------------------
# snappy (xerial framing)

_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
# magic, version, compatible version; snappy-java writes 1 and 1.
_XERIAL_HEADER: Final = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_HEADER_SIZE: Final = 16
# snappy-java's default block size, used by Kafka's Java producer.
_XERIAL_BLOCK_SIZE: Final = 32 * 1024
_BE_I32: Final = struct.Struct(">i")


def _snappy_compress(data: Buffer) -> bytes:
    view = memoryview(data)
    parts = [_XERIAL_HEADER]
    for start in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_SIZE]))
        parts.append(_BE_I32.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_raw_length(block: memoryview) -> int:
    try:
        return int(cramjam.snappy.decompress_raw_len(block))
    except Exception as exc:  # cramjam raises its own error types
        raise CompressionError(f"snappy: bad block preamble: {exc}") from None


def _snappy_decompress(data: Buffer, max_size: int) -> bytes:
    view = memoryview(data)
    if len(view) >= _XERIAL_HEADER_SIZE and view[:8].tobytes() == _XERIAL_MAGIC:
        # Walk the chunk table first: all lengths are known before any work is done.
        blocks: list[memoryview] = []
        total = 0
        pos = _XERIAL_HEADER_SIZE
        end = len(view)
        while pos < end:
            if end - pos < 4:
                raise CompressionError("snappy: truncated xerial chunk length")
            (length,) = _BE_I32.unpack_from(view, pos)
            pos += 4
            if length < 0 or length > end - pos:
                raise CompressionError("snappy: xerial chunk length out of range")
            block = view[pos : pos + length]
            pos += length
            total += _snappy_raw_length(block)
            if total > max_size:
                raise DecompressedTooLargeError(
                    f"snappy: decompressed size exceeds the limit of {max_size} bytes"
                )
            blocks.append(block)
        out = bytearray(total)
        at = 0
        for block in blocks:
            try:
                at += cramjam.snappy.decompress_raw_into(block, memoryview(out)[at:])
            except Exception as exc:
                raise CompressionError(f"snappy: {exc}") from None
        if at != total:
            raise CompressionError("snappy: block shorter than its declared length")
        return bytes(out)
    size = _snappy_raw_length(view)
    if size > max_size:
        raise DecompressedTooLargeError(
            f"snappy: decompressed size {size} exceeds the limit of {max_size} bytes"
        )
    out = bytearray(size)
    try:
        written = cramjam.snappy.decompress_raw_into(view, out)
    except Exception as exc:
        raise CompressionError(f"snappy: {exc}") from None
    if written != size:
        raise CompressionError("snappy: block shorter than its declared length")
    return bytes(out)


# --------------------------------------------------------------------------------------------
# gzip


def _gzip_compress(data: Buffer, level: int) -> bytes:
    # Kafka's -1 is the JDK Deflater's default, zlib's level 6.
    comp = zlib.compressobj(6 if level == -1 else level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return comp.compress(data) + comp.flush()


def _gzip_decompress(data: Buffer, max_size: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    rest: Buffer = data
    try:
        while True:
            dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
            # Ask for one byte more than allowed: getting it proves the output is too large.
            chunk = dec.decompress(rest, max_size - total + 1)
            total += len(chunk)
            if total > max_size:
                raise DecompressedTooLargeError(
                    f"gzip: decompressed size exceeds the limit of {max_size} bytes"
                )
            parts.append(chunk)
            if not dec.eof:
                raise CompressionError("gzip: truncated stream")
            rest = dec.unused_data
            # Another member may follow (Java's GZIPInputStream reads them all).
            if not rest:
                break
    except zlib.error as exc:
        raise CompressionError(f"gzip: {exc}") from None
    return b"".join(parts)


# --------------------------------------------------------------------------------------------
# lz4 frame

_LZ4_MAGIC: Final = 0x184D2204
_LE_U32: Final = struct.Struct("<I")
_LE_U64: Final = struct.Struct("<Q")
_LZ4_BLOCK_MAX: Final[dict[int, int]] = {4: 1 << 16, 5: 1 << 18, 6: 1 << 20, 7: 1 << 22}


def _lz4_compress(data: Buffer, level: int) -> bytes:
    # Independent blocks (Kafka's reader refuses linked ones), 64 KiB blocks, no content size;
    # cramjam adds block and content checksums, which Kafka's reader verifies.
    # Kafka's default level (9) is lz4's fast compressor (frame level 0); any other level is
    # LZ4 HC at that level, which the frame API starts at 2 (Kafka's 1 and 2 both become 2).
    frame_level = 0 if level == LEVEL_DEFAULTS[CODEC_LZ4] else max(level, 2)
    comp = cramjam.lz4.Compressor(level=frame_level, block_linked=False)
    comp.compress(data if isinstance(data, bytes) else bytes(data))
    return bytes(comp.finish())


def _lz4_bound(view: memoryview) -> tuple[int, int]:
    """``(bound, slack)``: an upper bound of the decompressed size of the lz4 frame(s) in
    ``view``, and by how much it may exceed the real size for ordinary encoders (which fill
    every block but the last).

    Frame layout: magic u32 LE, FLG, BD, [content size u64 LE], [dict id u32 LE], HC, then
    blocks of (u32 LE size with the high bit meaning "stored uncompressed", data, [u32 block
    checksum]) up to a zero size, then [u32 content checksum].
    """
    end = len(view)
    pos = 0
    bound = 0
    slack = 0
    while pos < end:
        if end - pos < 7:
            raise CompressionError("lz4: truncated frame header")
        (magic,) = _LE_U32.unpack_from(view, pos)
        if 0x184D2A50 <= magic <= 0x184D2A5F:  # skippable frame
            if end - pos < 8:
                raise CompressionError("lz4: truncated skippable frame")
            pos += 8 + _LE_U32.unpack_from(view, pos + 4)[0]
            continue
        if magic != _LZ4_MAGIC:
            raise CompressionError("lz4: bad frame magic")
        flg = view[pos + 4]
        bd = view[pos + 5]
        if flg >> 6 != 1:
            raise CompressionError("lz4: unsupported frame version")
        block_max = _LZ4_BLOCK_MAX.get((bd >> 4) & 7)
        if block_max is None:
            raise CompressionError("lz4: bad block size id")
        has_content_size = flg & 0x08
        pos += 6
        content_size = -1
        if has_content_size:
            if end - pos < 8:
                raise CompressionError("lz4: truncated frame header")
            (content_size,) = _LE_U64.unpack_from(view, pos)
            pos += 8
        if flg & 0x01:  # dictionary id
            pos += 4
        pos += 1  # header checksum, verified by the decoder
        block_checksum = 4 if flg & 0x10 else 0
        frame_bound = 0
        while True:
            if end - pos < 4:
                raise CompressionError("lz4: truncated block")
            (word,) = _LE_U32.unpack_from(view, pos)
            pos += 4
            if word == 0:
                break
            size = word & 0x7FFFFFFF
            if size > block_max:
                raise CompressionError("lz4: block larger than the frame's block maximum")
            frame_bound += size if word & 0x80000000 else block_max
            pos += size + block_checksum
        if flg & 0x04:
            pos += 4  # content checksum
        if pos > end:
            raise CompressionError("lz4: truncated frame")
        if 0 <= content_size <= frame_bound:
            frame_bound = content_size  # the decoder checks it
        else:
            slack += block_max
        bound += frame_bound
    return bound, slack


def _lz4_decompress(data: Buffer, max_size: int) -> bytes:
    view = memoryview(data)
    bound, slack = _lz4_bound(view)
    return _decompress_into(cramjam.lz4.decompress_into, "lz4", view, bound, slack, max_size)


# --------------------------------------------------------------------------------------------
# zstd

_ZSTD_MAGIC: Final = 0xFD2FB528
_ZSTD_BLOCK_MAX: Final = 128 * 1024
_FCS_SIZES: Final = (0, 2, 4, 8)
_DICT_ID_SIZES: Final = (0, 1, 2, 4)


def _zstd_bound(view: memoryview) -> tuple[int, int]:
    """``(bound, slack)`` of the zstd frame(s) in ``view``, as for :func:`_lz4_bound`.

    Frame layout (RFC 8878): magic u32 LE, frame header descriptor (bits 7-6 content size field
    flag, bit 5 single segment, bit 2 content checksum, bits 1-0 dictionary id flag), [window
    descriptor unless single segment], [dictionary id], [content size], then blocks, each a
    3-byte LE header (bit 0 last block, bits 1-2 type: 0 raw, 1 RLE, 2 compressed, bits 3-23
    size) followed by size bytes (one byte for RLE), then [u32 checksum].
    """
    end = len(view)
    pos = 0
    bound = 0
    slack = 0
    while pos < end:
        if end - pos < 4:
            raise CompressionError("zstd: truncated frame")
        (magic,) = _LE_U32.unpack_from(view, pos)
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # skippable frame
            if end - pos < 8:
                raise CompressionError("zstd: truncated skippable frame")
            pos += 8 + _LE_U32.unpack_from(view, pos + 4)[0]
            continue
        if magic != _ZSTD_MAGIC:
            raise CompressionError("zstd: bad frame magic")
        pos += 4
        if pos >= end:
            raise CompressionError("zstd: truncated frame header")
        fhd = view[pos]
        pos += 1
        single_segment = fhd & 0x20
        fcs_size = _FCS_SIZES[fhd >> 6]
        if fcs_size == 0 and single_segment:
            fcs_size = 1
        header_rest = (0 if single_segment else 1) + _DICT_ID_SIZES[fhd & 3]
        pos += header_rest
        if end - pos < fcs_size:
            raise CompressionError("zstd: truncated frame header")
        content_size = -1
        if fcs_size:
            content_size = int.from_bytes(view[pos : pos + fcs_size], "little")
            if fcs_size == 2:
                content_size += 256
            pos += fcs_size
        frame_bound = 0
        while True:
            if end - pos < 3:
                raise CompressionError("zstd: truncated block header")
            word = view[pos] | view[pos + 1] << 8 | view[pos + 2] << 16
            pos += 3
            block_type = (word >> 1) & 3
            size = word >> 3
            if block_type == 0:
                frame_bound += size
                pos += size
            elif block_type == 1:
                frame_bound += size
                pos += 1
            elif block_type == 2:
                frame_bound += _ZSTD_BLOCK_MAX
                pos += size
            else:
                raise CompressionError("zstd: reserved block type")
            if word & 1:
                break
        if fhd & 0x04:
            pos += 4
        if pos > end:
            raise CompressionError("zstd: truncated frame")
        if content_size >= 0:
            # The decoder checks the frame produces exactly its declared content size.
            frame_bound = content_size
        else:
            slack += _ZSTD_BLOCK_MAX
        bound += frame_bound
    return bound, slack


def _zstd_decompress(data: Buffer, max_size: int) -> bytes:
    view = memoryview(data)
    bound, slack = _zstd_bound(view)
    return _decompress_into(cramjam.zstd.decompress_into, "zstd", view, bound, slack, max_size)


# --------------------------------------------------------------------------------------------


# cramjam's message when the output buffer is full (Rust's io::ErrorKind::WriteZero).
_BUFFER_FULL: Final = "failed to write whole buffer"


def _decompress_into(
    func: Callable[[memoryview, bytearray], int],
    name: str,
    view: memoryview,
    bound: int,
    slack: int,
    max_size: int,
) -> bytes:
    """Decompress with a cramjam ``decompress_into`` into a buffer of at most ``max_size``.

    ``bound`` (from the frame headers) is at least the real size and at most ``slack`` above it
    for ordinary encoders. Within the limit, the buffer is ``bound`` bytes and output that does
    not fit means the frame lied: corrupt. Far above the limit, refuse without decompressing.
    In between, decompress into ``max_size`` bytes, and a full buffer means too large.
    """
    if bound - slack > max_size:
        raise DecompressedTooLargeError(
            f"{name}: decompressed size may reach {bound} bytes, over the limit of {max_size}"
        )
    out = bytearray(min(bound, max_size))
    try:
        written = func(view, out)
    except Exception as exc:  # cramjam.DecompressionError and friends
        if bound > max_size and _BUFFER_FULL in str(exc):
            raise DecompressedTooLargeError(
                f"{name}: decompressed size exceeds the limit of {max_size} bytes"
            ) from None
        raise CompressionError(f"{name}: {exc}") from None
    del out[written:]
    return bytes(out)


def compress(codec: int, data: Buffer, level: int | None = None) -> bytes:
    """Compress ``data`` as codec ``codec`` writes it inside a Kafka record batch.

    ``level`` is a level of Kafka's scale for the codec (``compression.gzip.level`` -1 or 1-9,
    ``compression.lz4.level`` 1-17, ``compression.zstd.level`` -131072-22; ignored for snappy),
    already validated; None is Kafka's default level.
    """
    if codec == CODEC_NONE:
        return bytes(data)
    if level is None:
        level = LEVEL_DEFAULTS.get(codec, 0)
    if codec == CODEC_GZIP:
        return _gzip_compress(data, level)
    if codec == CODEC_SNAPPY:
        return _snappy_compress(data)
    if codec == CODEC_LZ4:
        return _lz4_compress(data, level)
    if codec == CODEC_ZSTD:
        return bytes(cramjam.zstd.compress(data, level=level))
    raise UnknownCodecError(f"unknown compression codec id {codec}")


def decompress(codec: int, data: Buffer, max_size: int = DEFAULT_MAX_DECOMPRESSED) -> bytes:
    """Decompress ``data`` of codec ``codec``, refusing to produce more than ``max_size`` bytes.

    Raises :class:`UnknownCodecError`, :class:`DecompressedTooLargeError` or
    :class:`CompressionError`; nothing else for any input bytes.
    """
    if codec == CODEC_NONE:
        if len(data) > max_size:
            raise DecompressedTooLargeError(f"data exceeds the limit of {max_size} bytes")
        return bytes(data)
    if codec == CODEC_GZIP:
        return _gzip_decompress(data, max_size)
    if codec == CODEC_SNAPPY:
        return _snappy_decompress(data, max_size)
    if codec == CODEC_LZ4:
        return _lz4_decompress(data, max_size)
    if codec == CODEC_ZSTD:
        return _zstd_decompress(data, max_size)
    raise UnknownCodecError(f"unknown compression codec id {codec}")
