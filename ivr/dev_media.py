"""Development only: the line's own stand-in for Twilio's recording media.

A call played with `flask line call` in development (APP_ENV=development) records real audio:
the comment spoken by espeak-ng when it is installed, a tone otherwise, kept under the
instance folder. Its `RecordingUrl` lies under this blueprint, which answers as Twilio's media
endpoint does (HTTP Basic auth with the account's SID and token; `.wav`, `.json`, and DELETE
of `.json`), so the worker copies it, the console plays it and the transcriber hears it,
through the line's own fetch (storage/twilio_media.py) unchanged.

With the development secrets the line generates (no Twilio account configured),
`TWILIO_API_BASE` defaults to this blueprint on the local server (config/__init__.py). The
blueprint is registered only when APP_ENV is development: production and the tests have no
such route.
"""

from __future__ import annotations

import base64
import hmac
import io
import math
import re
import shutil
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request

from config import DEV_TWILIO_PATH

SID = re.compile(r"^(RE[0-9a-fA-F]{32})(\.wav|\.mp3|\.json)?$")
# espeak-ng's voice for the languages the line ships with; others use the language's first part.
ESPEAK_VOICES = {"en-US": "en-us", "es-US": "es-419"}
SAMPLE_RATE = 8000  # the tone's; espeak-ng's own rate is kept for speech

dev_twilio = Blueprint("dev_twilio", __name__, url_prefix=DEV_TWILIO_PATH)


def init_app(app: Flask) -> None:
    """Serve the stand-in, in development only."""
    if app.config["APP_ENV"] == "development":
        app.register_blueprint(dev_twilio)


def recordings_dir(config) -> Path:
    return Path(config["INSTANCE_DIR"]) / "dev-twilio" / "recordings"


def keep_recording(config, recording_sid: str, audio: bytes) -> Path:
    """Keep a simulated call's recording where the stand-in serves it from."""
    if not SID.match(recording_sid):
        raise ValueError(f"{recording_sid!r} is not a RecordingSid")
    folder = recordings_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recording_sid}.wav"
    path.write_bytes(audio)
    return path


def serves_recordings(config) -> bool:
    """Whether the line fetches recordings from this stand-in (development, TWILIO_API_BASE on it)."""
    return config["APP_ENV"] == "development" and config["TWILIO_API_BASE"].rstrip("/").endswith(DEV_TWILIO_PATH)


def _authorized(config) -> bool:
    expected = f"{config['TWILIO_ACCOUNT_SID']}:{config['TWILIO_AUTH_TOKEN']}".encode()
    given = request.headers.get("Authorization", "")
    return given.startswith("Basic ") and hmac.compare_digest(given[6:].encode(), base64.b64encode(expected))


def _recording(account: str, name: str) -> tuple[Path, str]:
    config = current_app.config
    if not _authorized(config):
        response = jsonify(code=20003, message="Authenticate")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        abort(response)
    found = SID.match(name)
    if account != config["TWILIO_ACCOUNT_SID"] or found is None:
        abort(404, description="No such recording.")
    return recordings_dir(config) / f"{found[1]}.wav", found[2] or ""


@dev_twilio.get("/2010-04-01/Accounts/<account>/Recordings/<name>")
def recording_media(account: str, name: str):
    path, extension = _recording(account, name)
    if not path.is_file():
        abort(404, description="No such recording.")
    if extension == ".mp3":
        abort(404, description="The development stand-in keeps WAV only: set RECORDING_FORMAT=wav.")
    if extension == ".json":
        with wave.open(str(path)) as audio:
            seconds = audio.getnframes() / audio.getframerate()
        return jsonify(sid=path.stem, account_sid=account, duration=str(round(seconds)), status="completed")
    return Response(path.read_bytes(), mimetype="audio/x-wav")


@dev_twilio.delete("/2010-04-01/Accounts/<account>/Recordings/<name>")
def delete_recording(account: str, name: str):
    path, extension = _recording(account, name)
    if extension != ".json":
        abort(405)
    if not path.is_file():
        abort(404, description="No such recording.")
    path.unlink()
    return Response(status=204)


# --- the audio of a simulated comment -----------------------------------------------------------


def comment_audio(text: str, language: str, seconds: int) -> bytes:
    """A mono 16-bit WAV of at least `seconds` (rounded to whole seconds): `text` spoken by
    espeak-ng in `language` when it is installed, else a tone, then silence."""
    spoken = _espeak(text, language)
    if spoken is None:
        return _tone(max(seconds, 1))
    with wave.open(io.BytesIO(spoken)) as audio:
        rate, width = audio.getframerate(), audio.getsampwidth()
        frames = audio.readframes(audio.getnframes())
    total = max(seconds * rate, math.ceil(len(frames) / width / rate) * rate)
    return _wav(frames + b"\0" * width * (total - len(frames) // width), rate, width)


def wav_seconds(audio: bytes) -> int:
    with wave.open(io.BytesIO(audio)) as found:
        return round(found.getnframes() / found.getframerate())


def _espeak(text: str, language: str) -> bytes | None:
    program = shutil.which("espeak-ng")
    if program is None or not text:
        return None
    voice = ESPEAK_VOICES.get(language) or language.split("-")[0].lower()
    with tempfile.TemporaryDirectory(prefix="commentline-speech-") as folder:
        out = Path(folder) / "speech.wav"
        done = subprocess.run([program, "-v", voice, "-w", str(out), text], capture_output=True, timeout=60)
        if done.returncode != 0 or not out.is_file():
            return None
        return out.read_bytes()


def _tone(seconds: int) -> bytes:
    """Half a second of a soft 440 Hz tone in every second, silence in between."""
    frames = bytearray()
    for i in range(seconds * SAMPLE_RATE):
        on = (i % SAMPLE_RATE) < SAMPLE_RATE // 2
        frames += struct.pack("<h", int(6000 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)) if on else 0)
    return _wav(bytes(frames), SAMPLE_RATE, 2)


def _wav(frames: bytes, rate: int, width: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(width)
        audio.setframerate(rate)
        audio.writeframes(frames)
    return out.getvalue()
