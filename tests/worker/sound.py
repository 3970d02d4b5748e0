"""Phone audio made for the tests: speech from espeak-ng, converted by sox to 8 kHz mono
16-bit WAV as Twilio records it, and MP3 from the same."""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from io import BytesIO
from pathlib import Path

import pytest


def require(ok: bool, what: str) -> None:
    """Skip a test that cannot run here; under CI=true fail it instead."""
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is needed and missing (CI=true: no skipping); run `make test` or .ci/run")
    pytest.skip(f"{what} is missing")


def require_sound_tools() -> None:
    require(bool(shutil.which("espeak-ng")), "espeak-ng")
    require(bool(shutil.which("sox")), "sox")


def speech_wav(
    folder: Path, name: str, text: str, voice: str = "en-us", rate: int = 140, pad_seconds: float = 0
) -> bytes:
    """`text` spoken by espeak-ng as 8 kHz mono phone audio (WAV bytes), with silence after."""
    require_sound_tools()
    raw, phone = folder / f"{name}-raw.wav", folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(raw), text], check=True)
    pad = ["pad", "0.3", str(pad_seconds)] if pad_seconds else ["pad", "0.3", "0.3"]
    # -D: no dither, so that the same text always makes the same audio (and the same transcript)
    subprocess.run(
        ["sox", "-D", "-V1", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(phone), *pad],
        check=True,
    )
    return phone.read_bytes()


def to_mp3(folder: Path, name: str, wav: bytes) -> bytes:
    source, target = folder / f"{name}-src.wav", folder / f"{name}.mp3"
    source.write_bytes(wav)
    done = subprocess.run(["sox", str(source), "-C", "32", str(target)], capture_output=True)
    require(done.returncode == 0, f"sox with MP3 support (libsox-fmt-mp3): {done.stderr.decode()[-200:]}")
    return target.read_bytes()


def silence_wav(seconds: float) -> bytes:
    """Silent 8 kHz mono WAV, made without any tool."""
    out = BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * int(8000 * seconds))
    return out.getvalue()


def wav_seconds(data: bytes) -> float:
    with wave.open(BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()
