"""Every /twilio/* request must carry Twilio's signature for the URL Twilio used."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app import create_app
from ivr.signature import is_valid_signature
from models import Call, db
from models.line import load_script, read_script_file
from tests.conftest import Caller, Twilio

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
VECTOR_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_test_vector_passes_our_check():
    assert is_valid_signature("12345", VECTOR_URL, VECTOR_PARAMS, VECTOR_SIGNATURE)


@pytest.mark.parametrize("change", ["signature", "url", "param", "token"])
def test_one_changed_character_fails_our_check(change):
    url, params, sig, token = VECTOR_URL, dict(VECTOR_PARAMS), VECTOR_SIGNATURE, "12345"
    if change == "signature":
        sig = "1" + sig[1:]
    elif change == "url":
        url = url.replace("foo=1", "foo=2")
    elif change == "param":
        params["Digits"] = "1235"
    else:
        token = "12346"
    assert not is_valid_signature(token, url, params, sig)


def calls_stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Call))


def test_webhook_signed_with_test_vector_method_is_accepted_and_one_changed_character_gets_403(twilio, app):
    call = twilio.call()
    params = {**call.params, "CallStatus": "ringing"}
    good = twilio.validator.compute_signature("http://localhost/twilio/voice", params)
    bad = ("A" if good[0] != "A" else "B") + good[1:]
    assert twilio.post("/twilio/voice", params, signature=bad).status_code == 403
    assert calls_stored(app) == 0
    assert twilio.post("/twilio/voice", params, signature=good).status_code == 200
    assert calls_stored(app) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/twilio/voice",
        "/twilio/status",
        "/twilio/language?s=1",
        "/twilio/recording-status",
        "/twilio/transcription",
        "/twilio/recorded?s=3",
    ],
)
def test_unsigned_webhook_gets_403_and_changes_nothing(client, app, path):
    response = client.post(
        path,
        data={
            "CallSid": "CA" + "2" * 32,
            "From": "+15035550100",
            "Digits": "1",
            "RecordingSid": "RE" + "2" * 32,
            "RecordingDuration": "5",
        },
    )
    assert response.status_code == 403
    assert calls_stored(app) == 0


def test_signature_with_another_token_gets_403(client, app):
    other = Twilio(lambda u, p, h: client.post(u, data=p, headers=h), token="not-the-token")
    assert other.post("/twilio/voice", {"CallSid": "CA" + "3" * 32}).status_code == 403
    assert calls_stored(app) == 0


def test_signature_over_extra_parameters_twilio_adds_later(twilio, app):
    reply = twilio.call(SomeNewTwilioParam="x", StirVerstat="TN-Validation-Passed-A").dial()
    assert reply.gather is not None
    assert calls_stored(app) == 1


def serve(settings, **extra):
    app = create_app({**settings, **extra})
    with app.app_context():
        load_script(db.session, read_script_file(app.config["LINE_CONFIG"]))
        db.session.commit()
    return app


def test_public_base_url_is_the_url_checked_behind_a_proxy(settings):
    app = serve(settings, PUBLIC_BASE_URL="https://line.example.org")
    client = app.test_client()
    public = Twilio(
        lambda u, p, h: client.post(u.replace("https://line.example.org", "http://10.0.0.5:8000"), data=p, headers=h),
        base="https://line.example.org",
    )
    reply = Caller(public).dial()
    assert reply.gather.get("action").startswith("https://line.example.org/twilio/language?")
    # Signed for the internal URL the app sees, not the one Twilio used: refused.
    internal = Twilio(lambda u, p, h: client.post(u, data=p, headers=h), base="http://10.0.0.5:8000")
    assert internal.post("/twilio/voice", {"CallSid": "CA" + "4" * 32}).status_code == 403
    with app.app_context():
        db.engine.dispose()


def test_forwarded_headers_are_trusted_only_when_configured(settings):
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "line.example.org"}
    for hops, expected in ((1, 200), (0, 403)):
        app = serve(settings, TRUSTED_PROXIES=str(hops))
        client = app.test_client()
        twilio = Twilio(
            lambda u, p, h, client=client: client.post(
                u.replace("https://line.example.org", "http://localhost"), data=p, headers={**h, **headers}
            ),
            base="https://line.example.org",
        )
        assert (
            twilio.post("/twilio/voice", {"CallSid": "CA" + "5" * 32, "CallStatus": "ringing"}).status_code == expected
        )
        with app.app_context():
            db.engine.dispose()


def test_signed_with_default_port_added(twilio, app):
    signer = Twilio(lambda u, p, h: twilio.send(u.replace(":80/", "/"), p, h), base="http://localhost:80")
    response = signer.post("/twilio/voice", {"CallSid": "CA" + "6" * 32, "CallStatus": "ringing"})
    # The test client requests http://localhost/...; Twilio's validator accepts either form.
    assert response.status_code == 200
