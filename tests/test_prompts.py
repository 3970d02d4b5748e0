"""Recorded prompts: uploaded in the console, checked and converted with sox, served to Twilio
without a session, and played (`<Play>`) in place of the voice: at once on the draft, on the
live line once the draft is published, and gone again when an earlier version is published;
Haitian Creole, which no voice speaks, heard as recorded where it is and said where it is not."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from facts.writer import note_transcription
from ivr.caller import LineFacts, Script, Take
from models import AuditEntry, LineSettings, Prompt, PromptAudio, Recording, ScriptVersion, db, utcnow
from models.drafts import draft_document, live_document
from models.line import TOPIC_LINE, line_script
from models.prompts import audio_name, recordable_lines
from storage.prompt_audio import PromptAudioError, prepare_prompt
from tests.console_support import leave_comment, wav_bytes
from tests.test_try_line import TryPhone

pytestmark = pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed (make test installs it)")


def upload(admin, language: str, key: str, data: bytes, filename: str = "prompt.wav"):
    admin.get("/admin/prompts")
    return admin.post(
        f"/admin/prompts/{language}/{key}/upload",
        {"audio": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )


def play_urls(reply) -> list[str]:
    return reply.plays()


def publish(admin) -> None:
    admin.get("/admin/script")
    assert admin.post("/admin/script/publish").status_code == 302


def script_of(app):
    with app.app_context():
        return line_script(app).get(db.session)


def test_an_uploaded_prompt_plays_on_the_draft_at_once_and_live_once_published(app, sign_in, twilio, client):
    admin = sign_in("admin")
    before = twilio.call().dial()
    assert "Pou kreyòl ayisyen, peze 3." in before.said and not before.plays()

    answer = upload(admin, "ht", "language_option", wav_bytes(2.0, rate=44100), "opsyon.wav")
    assert answer.status_code == 302
    assert "It is in the draft: publish it for callers to hear it." in admin.get("/admin/prompts").get_data(
        as_text=True
    )

    # Callers still hear the voice; "Try the line" on the draft plays the recording at once.
    assert "Pou kreyòl ayisyen, peze 3." in twilio.call().dial().said and not twilio.call().dial().plays()
    phone = TryPhone(sign_in("staff"))
    tried = phone.dial("draft")
    assert "Pou kreyòl ayisyen, peze 3." not in tried.said and len(tried.plays()) == 1
    assert not phone.dial("live").plays()

    publish(admin)
    reply = twilio.call().dial()
    assert reply.plays() == tried.plays()
    assert "Pou kreyòl ayisyen, peze 3." not in reply.said  # played, no longer said
    assert "For English, press 1." in reply.said and "Para español, oprima 2." in reply.said
    (url,) = reply.plays()
    # The Creole greeting is still said, in the stand-in voice, before the recorded option.
    gather = [(el.tag, el.get("language")) for el in reply.gather]
    assert ("Say", "fr-FR") in gather and ("Play", None) in gather
    name = re.fullmatch(r"http://localhost/prompts/([0-9a-f]{40})\.wav", url).group(1)

    # Twilio fetches it without a session: 8 kHz mono 16-bit WAV, cached, with its SHA-256 as ETag.
    fetched = client.get(url)
    assert fetched.status_code == 200 and fetched.mimetype == "audio/wav"
    assert "immutable" in fetched.headers["Cache-Control"] and "public" in fetched.headers["Cache-Control"]
    with wave.open(io.BytesIO(fetched.data)) as played:
        assert (played.getframerate(), played.getnchannels(), played.getsampwidth()) == (8000, 1, 2)
        assert abs(played.getnframes() / 8000 - 2.0) < 0.05
    with app.app_context():
        audio = db.session.scalar(select(PromptAudio).where(PromptAudio.name == name))
        assert fetched.headers["ETag"] == f'"{audio.digest}"'
        prompt = db.session.scalar(select(Prompt).where(Prompt.language == "ht"))
        assert (prompt.key, prompt.source, prompt.text) == ("language_option", "upload", "Pou kreyòl ayisyen, peze 3.")
        assert db.session.scalar(select(AuditEntry.target).where(AuditEntry.action == "prompt_upload")) == (
            "prompt ht language_option"
        )
    again = client.get(url, headers={"If-None-Match": fetched.headers["ETag"]})
    assert again.status_code == 304
    part = client.get(url, headers={"Range": "bytes=0-43"})
    assert part.status_code == 206 and len(part.data) == 44

    # Going back to the voice is a change to the draft too: said on the draft, played live until published.
    admin.get("/admin/prompts")
    assert admin.post("/admin/prompts/ht/language_option/remove").status_code == 302
    assert "Pou kreyòl ayisyen, peze 3." in phone.dial("draft").said
    assert twilio.call().dial().plays() == [url]
    publish(admin)
    assert "Pou kreyòl ayisyen, peze 3." in twilio.call().dial().said
    assert not twilio.call().dial().plays()


def test_publishing_an_earlier_version_takes_back_its_prompts(app, sign_in, twilio):
    """The draft's differences name each prompt added, replaced or removed; publishing is one
    audited step; publishing the version before again plays what that version played."""
    admin = sign_in("admin")
    upload(admin, "ht", "greeting", wav_bytes(1.0, pitch=300))
    upload(admin, "ht", TOPIC_LINE + "housing", wav_bytes(1.0, pitch=500))
    page = admin.get("/admin/script").get_data(as_text=True)
    assert "recorded prompt ht" in page
    assert "greeting: added" in page and "topic housing&#39;s menu line: added" in page
    with app.app_context():
        first = db.session.get(LineSettings, 1).version
    publish(admin)
    greeting = twilio.call().dial().plays()
    assert len(greeting) == 1

    # Replace the greeting's recording and remove the housing line's, then publish.
    upload(admin, "ht", "greeting", wav_bytes(1.0, pitch=700))
    admin.post(f"/admin/prompts/ht/{TOPIC_LINE}housing/remove")
    page = admin.get("/admin/script").get_data(as_text=True)
    assert "greeting: replaced" in page and "topic housing&#39;s menu line: removed" in page
    publish(admin)
    replaced = twilio.call().dial().plays()
    assert len(replaced) == 1 and replaced != greeting
    with app.app_context():
        entry = db.session.scalar(
            select(AuditEntry).where(AuditEntry.action == "script_publish").order_by(AuditEntry.id.desc())
        )
        assert any(change.startswith("recorded prompt ht: greeting: replaced") for change in entry.detail["changes"])
        assert db.session.scalar(select(ScriptVersion.document).where(ScriptVersion.version == first))["prompts"] == {}

    # Undo to the first publish: its recordings play again; to the version before it, none.
    assert admin.post(f"/admin/script/versions/{first + 1}/publish").status_code == 302
    assert twilio.call().dial().plays() == greeting
    with app.app_context():
        assert set(live_document(db.session)["prompts"]["ht"]) == {"greeting", TOPIC_LINE + "housing"}
    assert admin.post(f"/admin/script/versions/{first}/publish").status_code == 302
    assert not twilio.call().dial().plays()
    # Every recording made stays on record, whichever version plays it.
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Prompt)) == 3


def test_flask_line_call_hears_creole_played_and_said(app, sign_in, runner):
    admin = sign_in("admin")
    upload(admin, "ht", "topic_intro", wav_bytes(1.0))
    publish(admin)
    result = runner.invoke(args=["line", "call", "--press", "3", "3", "--seconds", "0"])
    assert result.exit_code == 0, result.output
    assert re.search(r"\[plays http://localhost/prompts/[0-9a-f]{40}\.wav\]", result.output), result.output
    assert "Pou lojman, peze 3." in result.output  # a topic's line, not recorded: said


def test_prompt_urls_lead_nowhere_else(app, sign_in, twilio, client):
    admin = sign_in("admin")
    upload(admin, "ht", "greeting", wav_bytes(1.5))
    with app.app_context():
        audio = db.session.scalar(select(PromptAudio))
        assert audio.name == audio_name(app.config["SECRET_KEY"], audio.digest)
        digest, key = audio.digest, audio.storage_key
    assert client.get(f"/prompts/{audio.name}.wav").status_code == 200
    for guess in (
        digest,  # the content's hash alone
        audio_name("another-key", digest),  # a name made without the line's key
        "RE" + "0" * 32,  # a caller's recording sid
        "..%2Frecordings%2F2026",
        key.replace("/", "%2F"),
        "0" * 40,
    ):
        assert client.get(f"/prompts/{guess}.wav").status_code == 404, guess
    assert client.post(f"/prompts/{audio.name}.wav").status_code == 405


@pytest.mark.parametrize(
    "make, filename, message",
    [
        (lambda: b"", "empty.wav", "the file is empty"),
        (lambda: b"hello, this is text", "notes.txt", "not an audio file the line reads"),
        (lambda: b"RIFF\x10\x00\x00\x00WAVEjunk", "broken.wav", "could not be read as WAV audio"),
        (lambda: wav_bytes(0.2), "short.wav", "a prompt lasts at least 0.5 s"),
        (lambda: wav_bytes(61.0), "long.wav", "a prompt lasts at most 60 s"),
        (lambda: silent_wav(2.0), "silent.wav", "silent or nearly"),
        (lambda: clipped_wav(2.0), "loud.wav", "it is clipped"),
    ],
)
def test_a_bad_upload_gets_a_clear_error_and_changes_nothing(app, sign_in, twilio, make, filename, message):
    admin = sign_in("admin")
    answer = upload(admin, "ht", "greeting", make(), filename)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400 and message in page, page[-1500:]
    assert "Traceback" not in page
    with app.app_context():
        assert db.session.scalar(select(Prompt)) is None
    assert not twilio.call().dial().plays()


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(app, sign_in):
    app.config["PROMPT_MAX_BYTES"] = 100000  # PROMPT_MAX_BYTES=100000
    admin = sign_in("admin")
    over = upload(admin, "ht", "greeting", wav_bytes(10.0))  # 160 kB: within the form's slack
    assert over.status_code == 400 and "over the 0.1 MB allowed" in over.get_data(as_text=True)
    far_over = upload(admin, "ht", "greeting", wav_bytes(30.0))  # 480 kB
    assert far_over.status_code == 413 and "larger than the 0.1 MB a prompt may be" in far_over.get_data(as_text=True)


def test_an_mp3_upload_is_converted_to_wav(app, sign_in, tmp_path, twilio, client):
    source = tmp_path / "tone.wav"
    source.write_bytes(wav_bytes(2.0, rate=22050))
    mp3 = tmp_path / "tone.mp3"
    made = subprocess.run(["sox", str(source), str(mp3)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip("sox cannot write MP3 here (libsox-fmt-mp3)")
    admin = sign_in("admin")
    assert upload(admin, "es-US", "goodbye", mp3.read_bytes(), "adios.mp3").status_code == 302
    with app.app_context():
        audio = db.session.scalar(select(PromptAudio))
        assert audio.content_type == "audio/wav" and audio.storage_key == f"prompts/{audio.digest}.wav"


@settings(max_examples=60, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.tuples(
            st.sampled_from([b"RIFF\x00\x01\x00\x00WAVE", b"ID3", b"\xff\xfb", b"OggS", b"fLaC"]), st.binary()
        ).map(lambda parts: parts[0] + parts[1]),
    )
)
def test_any_bytes_are_a_prompt_or_a_reason(data):
    """Whatever is uploaded, the check answers a prompt file or a PromptAudioError, nothing else."""
    try:
        prepared = prepare_prompt(data, min_seconds=0.5, max_seconds=60, max_bytes=1_000_000)
    except PromptAudioError as exc:
        assert str(exc) and "/tmp" not in str(exc)
    else:
        assert prepared.data[:4] == b"RIFF"


def test_only_admins_upload_and_only_recordable_lines(app, sign_in):
    staff = sign_in("staff", "someone@example.org")
    assert upload(staff, "ht", "greeting", wav_bytes(1.0)).status_code == 403
    admin = sign_in("admin")
    assert upload(admin, "ht", "reference", wav_bytes(1.0)).status_code == 404  # it has {reference}
    assert upload(admin, "fr", "greeting", wav_bytes(1.0)).status_code == 404
    assert upload(admin, "ht", "topic:nothing", wav_bytes(1.0)).status_code == 404


def test_the_console_warns_of_creole_lines_still_read_by_the_french_voice(app, sign_in):
    admin = sign_in("admin")
    script = script_of(app)
    lines = recordable_lines(script, "ht")
    topics = admin.get("/admin/topics").get_data(as_text=True)
    assert f"ht: {len(lines)} lines without a recording" in topics
    page = admin.get("/admin/prompts").get_data(as_text=True)
    assert f"ht: {len(lines)} lines still without a recording" in page
    assert "not recorded: read by Polly.Lea (fr-FR)" in page
    assert "always said by Polly.Lea (fr-FR): it has a placeholder" in page
    upload(admin, "ht", "greeting", wav_bytes(1.0))
    page = admin.get("/admin/prompts").get_data(as_text=True)
    assert f"ht: {len(lines) - 1} lines still without a recording" in page


def test_a_whole_creole_call_plays_every_recorded_line_and_says_the_rest(app, sign_in, twilio):
    """The issue's proof: a call played as Twilio plays it chooses Haitian Creole and hears
    `<Play>` for every recorded line and `<Say>` for the rest."""
    admin = sign_in("admin")
    script = script_of(app)
    lines = dict(recordable_lines(script, "ht"))
    for index, key in enumerate(lines):
        assert upload(admin, "ht", key, wav_bytes(1.0, pitch=300 + 40 * index)).status_code == 302
    publish(admin)
    script = script_of(app)
    recorded = {key: f"[plays http://localhost/prompts/{name}.wav]" for (_, key), name in script.recorded}
    assert set(recorded) == set(lines)

    caller = Script(["3", "1", "1", "2"], [Take(12)])  # Creole, the budget, support; then end
    played = twilio.play(caller, line=LineFacts.from_script(script), keep_heard=True)
    heard = played.heard
    assert played.language == "ht" and list(played.topics.items()) == [("budget", "support")]
    for key in ("greeting", "language_option", "topic_intro", "repeat_hint", "record", "thanks", "another"):
        assert recorded[key] in heard, key
    for slug in ("budget", "transit", "housing", "general"):
        assert recorded[TOPIC_LINE + slug] in heard
    said = " ".join(line for line in heard if not line.startswith("["))
    for key, text in lines.items():
        if key not in ("greeting", "language_option"):  # other languages' greetings are said
            assert text not in said, key
    # Lines with a placeholder are said, in the stand-in voice.
    assert "Si ou dakò ak bidjè vil la pwopoze a, peze 1." in said
    assert "Nimewo referans ou se" in said
    assert "Mèsi. Nou anrejistre kòmantè ou a." not in said


def test_a_creole_comment_shows_the_language_and_engine_of_its_transcript(app, twilio, sign_in):
    _, sid, reference = leave_comment(twilio, topic="3", stance=None, language="3")
    with app.app_context():
        row = db.session.scalar(select(Recording).where(Recording.recording_sid == sid))
        assert row.language == "ht"
        note_transcription(
            db.session,
            sid,
            row.call_sid,
            at=utcnow(),
            source="whisper",
            transcription_sid=None,
            status="completed",
            text="Mwen pa dakò ak bidjè a.",
            language="ht",
            engine="faster-whisper whisper-base int8",
        )
        db.session.commit()
    page = sign_in("staff").get(f"/comments/{reference}").get_data(as_text=True)
    assert "Mwen pa dakò ak bidjè a." in page and "ht · faster-whisper whisper-base int8" in page


def silent_wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return out.getvalue()


def clipped_wav(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((b"\xff\x7f" * 20 + b"\x01\x80" * 20) * int(8000 * seconds / 40))
    return out.getvalue()


def test_flask_line_sync_keeps_the_recordings_a_file_cannot_have(app, sign_in, runner, twilio):
    """The script file has no recordings: syncing it keeps the draft's, and publishing it
    keeps the live script's."""
    admin = sign_in("admin")
    upload(admin, "ht", "greeting", wav_bytes(1.0, pitch=300))
    publish(admin)
    live = twilio.call().dial().plays()
    upload(admin, "ht", "thanks", wav_bytes(1.0, pitch=500))
    result = runner.invoke(args=["line", "sync"])
    assert result.exit_code == 0 and "recorded prompt ht: thanks: added: the voice → recording " in result.output, (
        result.output
    )
    assert "greeting" not in result.output
    with app.app_context():
        assert set(draft_document(db.session)["prompts"]["ht"]) == {"greeting", "thanks"}
    result = runner.invoke(args=["line", "sync", "--publish"])
    assert result.exit_code == 0 and "The line already matches the file." in result.output, result.output
    assert twilio.call().dial().plays() == live
    with app.app_context():
        assert set(draft_document(db.session)["prompts"]["ht"]) == {"greeting", "thanks"}


def test_a_recorded_block_message_plays_to_a_blocked_caller(app, sign_in, twilio):
    """The block list's message is a line like any other: recorded, it is played."""
    admin = sign_in("admin")
    assert "blocked" in dict(recordable_lines(script_of(app), "en-US"))
    assert upload(admin, "en-US", "blocked", wav_bytes(1.5)).status_code == 302
    publish(admin)
    admin.get("/admin/blocked")
    assert admin.post("/admin/blocked", {"number": "+15035550166", "reason": "a test"}).status_code == 302
    reply = twilio.call(From="+15035550166").dial()
    assert len(reply.plays()) == 1 and "This line cannot take your call" not in reply.said
    assert reply.gather is None and reply.root[-1].tag == "Hangup"
