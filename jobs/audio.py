"""Checks on a recording's media before it is kept: the type Twilio said, a size within
bounds, and for WAV a duration (read from its header) that agrees with Twilio's."""

from __future__ import annotations

import struct
from dataclasses import dataclass

WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
MP3_TYPES = ("audio/mpeg", "audio/mp3", "audio/mpeg3", "audio/x-mpeg-3")
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


class BadMedia(ValueError):
    """The media is not a recording we can keep; the message says what is wrong."""


@dataclass(frozen=True)
class Audio:
    content_type: str
    seconds: float | None  # None where the format gives no cheap, exact answer (MP3)


def wav_seconds(data: bytes) -> float:
    """The length of a RIFF/WAVE file from its `fmt ` and `data` chunks. Raises BadMedia."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadMedia("not a WAV file (no RIFF/WAVE header)")
    byte_rate, pos = None, 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt " and size >= 16:
            channels, rate, byte_rate = struct.unpack_from("<HIi", data, pos + 10)
            if not (channels and rate and byte_rate > 0):
                raise BadMedia("WAV header has no sample rate")
        elif chunk == b"data":
            if byte_rate is None:
                raise BadMedia("WAV data comes before its format")
            return min(size, len(data) - pos - 8) / byte_rate
        pos += 8 + size + (size & 1)
    raise BadMedia("WAV file has no data chunk")


def looks_like_mp3(data: bytes) -> bool:
    return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


def check_media(content_type: str, data: bytes, fmt: str, *, max_bytes: int, expected_seconds: int | None) -> Audio:
    """Check media fetched as `fmt` (wav or mp3) and say what it is. Raises BadMedia.

    A WAV whose length differs from Twilio's `RecordingDuration` by more than 2 s (or 10 %)
    is refused: it is cut short or another recording. MP3 is checked only for its type and
    frame header."""
    ctype = content_type.split(";")[0].strip().lower()
    if not data:
        raise BadMedia("the media is empty")
    if len(data) > max_bytes:
        raise BadMedia(f"the media is {len(data)} bytes, over the {max_bytes} allowed")
    if fmt == "mp3":
        if ctype not in MP3_TYPES or not looks_like_mp3(data):
            raise BadMedia(f"expected MP3, got {ctype or 'no type'}")
        return Audio(CONTENT_TYPES["mp3"], None)
    if ctype not in WAV_TYPES:
        raise BadMedia(f"expected WAV, got {ctype or 'no type'}")
    seconds = wav_seconds(data)
    if expected_seconds is not None and abs(seconds - expected_seconds) > max(2.0, 0.1 * expected_seconds):
        raise BadMedia(f"the WAV lasts {seconds:.1f} s but Twilio said {expected_seconds} s")
    return Audio(CONTENT_TYPES["wav"], seconds)
