"""Development: a call played with `flask line call` records real audio, served by the line's
own stand-in for Twilio's media (ivr/dev_media.py), which the worker copies and the console
plays. Production and the tests have no such route."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import wave
from io import BytesIO
from pathlib import Path

import pytest
from sqlalchemy import select

from app import create_app
from config import PROJECT_DIR, load_settings
from ivr.dev_media import comment_audio, wav_seconds
from models import Recording, Transcription, db
from tests.conftest import ACCOUNT, SECRETS, TOKEN, ServedLine, eventually
from tests.console_support import Console, make_user
from tests.worker.conftest import whisper_model_dir
from tests.worker.sound import require


def development(settings: dict[str, str], instance: Path) -> dict[str, str]:
    """The settings `make run` gives: APP_ENV=development, no Twilio account (the line makes
    its own secrets), on the test's database."""
    env = {k: v for k, v in settings.items() if k not in SECRETS or k == "SECRET_KEY"}
    return {**env, "APP_ENV": "development", "INSTANCE_DIR": str(instance), "TRANSCRIBERS": "*=none"}


def flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`flask --app app ...` as a developer runs it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "APP_ENV"))}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=PROJECT_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def recording(app, sid: str | None = None) -> Recording | None:
    with app.app_context():
        query = select(Recording) if sid is None else select(Recording).where(Recording.recording_sid == sid)
        row = db.session.scalar(query)
        db.session.expunge_all()
        return row


@pytest.mark.parametrize("language", ["1", "2"], ids=["english-twilio-transcript", "spanish-whisper"])
def test_a_call_played_in_development_has_audio_the_worker_copies_and_the_console_plays(
    app, settings, tmp_path, language
):
    env = development(settings, tmp_path / "dev-instance")
    if language == "2":  # no transcript from Twilio: the worker's transcriber hears the audio
        require(bool(shutil.which("espeak-ng")), "espeak-ng")
        env.update(TRANSCRIBERS="*=whisper", WHISPER_MODEL_DIR=whisper_model_dir())
    load_settings(env)  # the development secrets, made once, before any process reads them
    line = ServedLine(env, workers=1, threads=4)
    try:
        # As `make run` serves it, and so TWILIO_API_BASE's default: WEB_PORT wins over the
        # .flaskenv a `make run` in this folder left behind (for another port).
        env["WEB_PORT"] = env["PORT"] = str(line.port)
        called = flask(env, "line", "call", "--press", language, "3", "--seconds", "4", "--url", line.base)
        assert called.returncode == 0, called.stdout + called.stderr
        assert "Its audio is in" in called.stdout
        stored = eventually(lambda: recording(app), lambda row: row is not None and row.status == "completed")
        assert stored.media_url.startswith(f"http://127.0.0.1:{line.port}/dev/twilio/2010-04-01/Accounts/AC")
        kept = Path(env["INSTANCE_DIR"]) / "dev-twilio" / "recordings" / f"{stored.recording_sid}.wav"
        audio = kept.read_bytes()
        assert stored.duration == wav_seconds(audio) >= 4

        worked = flask(env, "worker", "run", "--burst")
        assert worked.returncode == 0, worked.stdout + worked.stderr
        copied = recording(app, stored.recording_sid)
        assert copied.storage_key and copied.content_type == "audio/wav", worked.stderr[-2000:]
        assert (Path(env["INSTANCE_DIR"]) / "recordings" / copied.storage_key).read_bytes() == audio
        with app.app_context():
            transcripts = dict(db.session.execute(select(Transcription.source, Transcription.text)).all())
        if language == "1":
            assert transcripts == {"twilio": "This is a test comment."}  # as the simulated call sent it
        else:
            assert "comentario" in transcripts["whisper"].lower(), transcripts  # the spoken comment, heard

        console = create_app(env)
        make_user(console, "dev@example.org")
        staff = Console(console.test_client())
        assert staff.sign_in("dev@example.org").status_code == 302
        reference = called.stdout.split("reference ")[-1].split(".")[0]
        played = staff.get(f"/audio/{reference}")
        assert played.status_code == 200 and played.mimetype == "audio/wav"
        assert played.get_data() == audio
        with wave.open(BytesIO(played.get_data())) as heard:
            assert heard.getnframes() / heard.getframerate() >= 4
        with console.app_context():
            db.engine.dispose()
    finally:
        line.stop()


def auth(account: str = ACCOUNT, token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{account}:{token}".encode()).decode()}


MEDIA = f"/dev/twilio/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE{'a' * 32}"


def test_the_stand_in_answers_as_twilio_in_development_only(settings, tmp_path):
    dev = create_app({**settings, "APP_ENV": "development"})
    (tmp_path / "instance" / "dev-twilio" / "recordings").mkdir(parents=True)
    (tmp_path / "instance" / "dev-twilio" / "recordings" / f"RE{'a' * 32}.wav").write_bytes(comment_audio("", "", 2))
    client = dev.test_client()
    assert client.get(MEDIA + ".wav").status_code == 401
    assert client.get(MEDIA + ".wav", headers=auth(token="wrong")).status_code == 401
    fetched = client.get(MEDIA + ".wav", headers=auth())
    assert fetched.status_code == 200 and fetched.mimetype == "audio/x-wav"
    assert wav_seconds(fetched.get_data()) == 2
    assert client.get(MEDIA, headers=auth()).get_data() == fetched.get_data()
    assert client.get(MEDIA + ".json", headers=auth()).json["duration"] == "2"
    assert client.get(MEDIA.replace("a" * 32, "b" * 32), headers=auth()).status_code == 404
    assert client.get(MEDIA.replace(ACCOUNT, "AC" + "9" * 32), headers=auth()).status_code == 404
    assert client.get(MEDIA + "/../x", headers=auth()).status_code == 404
    assert client.delete(MEDIA + ".json", headers=auth()).status_code == 204
    assert client.get(MEDIA + ".wav", headers=auth()).status_code == 404
    for env in ("production", "test"):
        other = create_app({**settings, "APP_ENV": env})
        assert other.test_client().get(MEDIA + ".wav", headers=auth()).status_code == 404, env


def test_development_fetches_from_the_stand_in_only_without_a_twilio_account(tmp_path):
    base = {"INSTANCE_DIR": str(tmp_path), "SECRET_KEY": "s", "PORT": "5123"}
    assert load_settings({**base, "APP_ENV": "development"})["TWILIO_API_BASE"] == "http://127.0.0.1:5123/dev/twilio"
    account = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TOKEN}
    assert load_settings({**base, **account, "APP_ENV": "development"})["TWILIO_API_BASE"] == "https://api.twilio.com"
    assert load_settings({**base, "APP_ENV": "test"})["TWILIO_API_BASE"] == "https://api.twilio.com"
    chosen = {**base, "APP_ENV": "development", "TWILIO_API_BASE": "http://media.example.org/"}
    assert load_settings(chosen)["TWILIO_API_BASE"] == "http://media.example.org"
    assert load_settings({**base, **account})["TWILIO_API_BASE"] == "https://api.twilio.com"  # production


@pytest.mark.parametrize("speech", [True, False], ids=["espeak-ng", "tone"])
def test_the_comment_is_real_audio_of_the_length_said(speech, monkeypatch, tmp_path):
    if not speech:
        monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng to be found
    elif not any((Path(p) / "espeak-ng").exists() for p in os.environ["PATH"].split(os.pathsep)):
        pytest.skip("espeak-ng is not installed")
    started = time.monotonic()
    audio = comment_audio("This is a test comment.", "en-US", 6)
    assert time.monotonic() - started < 30
    with wave.open(BytesIO(audio)) as made:
        assert made.getnchannels() == 1 and made.getsampwidth() == 2
        frames = made.readframes(made.getnframes())
    assert wav_seconds(audio) == 6 and any(frames)
    assert wav_seconds(comment_audio("A longer comment, spoken for longer than a second.", "es-US", 1)) >= 1
