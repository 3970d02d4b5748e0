"""A recorded prompt's audio: checked, then converted to what Twilio plays well, with sox.

Staff upload WAV, MP3, OGG/Vorbis or FLAC (or Twilio's own WAV, for a prompt recorded by
phone). It must be readable, last between `PROMPT_MIN_SECONDS` and `PROMPT_MAX_SECONDS`, not
be silent (its RMS level above `SILENT_DBFS`) and not clipped (no run of samples at full
scale). It is kept as 8 kHz mono 16-bit PCM WAV: the telephone network carries 8 kHz audio
(Twilio plays every file down to it), so a larger file only costs Twilio's fetch, and a WAV
plays without a decoder's delay. sox (the Debian packages `sox` and `libsox-fmt-mp3`, which
the worker already uses) does the reading, measuring and converting; ffmpeg is not needed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import checksum

CONTENT_TYPE = "audio/wav"
SAMPLE_RATE = 8000
# The RMS level below which a file sounds silent, and the peak level (with PEAKS_CLIPPED
# samples at it) that means its loudest parts were cut off.
SILENT_DBFS = -50.0
CLIPPED_DBFS = -0.1
PEAKS_CLIPPED = 20
SOX_SECONDS = 60  # the longest sox may take over one file


class PromptAudioError(ValueError):
    """The file cannot be a prompt; the message says why, for the staff member who sent it."""


@dataclass(frozen=True)
class PromptFile:
    """A prompt as Twilio will play it: the WAV bytes, their SHA-256, and what was measured."""

    data: bytes
    digest: str
    seconds: float
    rms_dbfs: float
    peak_dbfs: float

    @property
    def storage_key(self) -> str:
        """Where the line's storage keeps it: fixed by its content, so a file is kept once."""
        return f"prompts/{self.digest}.wav"


def kind_of(data: bytes) -> str | None:
    """The audio format the bytes start like (wav, mp3, ogg, flac), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    if data[:4] == b"OggS":
        return "ogg"
    if data[:4] == b"fLaC":
        return "flac"
    return None


def sox_available() -> bool:
    return shutil.which("sox") is not None


def _sox(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["sox", *args], capture_output=True, text=True, timeout=SOX_SECONDS, check=False)
    except FileNotFoundError:
        raise PromptAudioError("sox is not installed on the server: install the sox package") from None
    except subprocess.TimeoutExpired:
        raise PromptAudioError("the file took too long to read") from None


def _stats(path: Path, kind: str) -> dict[str, float]:
    """sox's `stats` of a file: the overall column of each numeric row, by its name."""
    done = _sox(str(path), "-n", "stats")
    if done.returncode != 0:
        raise PromptAudioError(f"the file could not be read as {kind.upper()} audio: it may be damaged or cut short")
    found = {}
    for row in done.stderr.splitlines():
        match = re.match(r"^(\S.*?)\s{2,}(-inf|-?[\d.]+)([kM]?)(?:\s|$)", row)
        if match:
            name, value, scale = match.groups()
            found[name.strip()] = float(value) * {"": 1, "k": 1e3, "M": 1e6}[scale]
    return found


def prepare_prompt(data: bytes, *, min_seconds: float, max_seconds: float, max_bytes: int) -> PromptFile:
    """Check an audio file and convert it to 8 kHz mono 16-bit WAV. Raises PromptAudioError
    saying what is wrong: empty, too large, not audio sox reads, too short or long, silent,
    clipped."""
    if not data:
        raise PromptAudioError("the file is empty")
    if len(data) > max_bytes:
        raise PromptAudioError(f"the file is {len(data) / 1e6:.1f} MB, over the {max_bytes / 1e6:.1f} MB allowed")
    kind = kind_of(data)
    if kind is None:
        raise PromptAudioError("this is not an audio file the line reads: send WAV, MP3, OGG or FLAC")
    with tempfile.TemporaryDirectory(prefix="prompt-") as folder:
        given, converted = Path(folder) / f"given.{kind}", Path(folder) / "prompt.wav"
        given.write_bytes(data)
        stats = _stats(given, kind)
        seconds = stats.get("Length s")
        if seconds is None:
            raise PromptAudioError("the file's length could not be read")
        if seconds < min_seconds:
            raise PromptAudioError(f"it lasts {seconds:.1f} s: a prompt lasts at least {min_seconds:g} s")
        if seconds > max_seconds:
            raise PromptAudioError(f"it lasts {seconds:.1f} s: a prompt lasts at most {max_seconds:g} s")
        rms, peak = stats.get("RMS lev dB", float("-inf")), stats.get("Pk lev dB", float("-inf"))
        if rms < SILENT_DBFS:
            level = "no sound at all" if rms == float("-inf") else f"a level of {rms:.0f} dBFS; speech is around -20"
            raise PromptAudioError(f"it is silent or nearly ({level}): record it again")
        if peak >= CLIPPED_DBFS and stats.get("Pk count", 0) >= PEAKS_CLIPPED:
            raise PromptAudioError(
                "it is clipped (its loudest parts are cut off at full scale): record it again, less loud"
            )
        done = _sox(
            "-G", str(given), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(converted)
        )
        if done.returncode != 0 or not converted.is_file():
            raise PromptAudioError("the file could not be converted to WAV: it may be damaged")
        wav = converted.read_bytes()
    return PromptFile(wav, checksum(wav), round(seconds, 2), rms, peak)


def store_prompt_file(store, prepared: PromptFile) -> None:
    """Put a prepared prompt in the line's storage (`storage_for`), once: its key is its content's."""
    if not store.exists(prepared.storage_key):
        store.put(prepared.storage_key, prepared.data, CONTENT_TYPE)
