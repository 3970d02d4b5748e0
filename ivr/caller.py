"""A caller that follows the line's TwiML the way Twilio does: it signs each webhook with the
line's Auth Token, posts it, reads the reply, says aloud what it hears, presses keys at each
`<Gather>`, records at `<Record>` and sends the callbacks Twilio would. `flask line call`
uses it to try the line without a phone."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

from twilio.request_validator import RequestValidator

NO_KEY = "-"  # in a list of presses: let the menu time out
HANG_UP = "hangup"  # in a list of presses: hang up at this menu


Post = Callable[[str, dict, dict], tuple[int, str]]


@dataclass
class PlayedCall:
    call_sid: str
    heard: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    webhooks: int = 0


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


class SimulatedCaller:
    def __init__(
        self,
        post: Post,
        token: str,
        base_url: str,
        *,
        account_sid: str = "AC" + "0" * 32,
        from_number: str = "+15555550100",
        to_number: str = "+15555550199",
    ) -> None:
        self.post, self.base_url = post, base_url.rstrip("/")
        self.validator = RequestValidator(token)
        self.account_sid, self.from_number, self.to_number = account_sid, from_number, to_number

    def send(self, call: PlayedCall, url: str, params: dict) -> str:
        headers = {"X-Twilio-Signature": self.validator.compute_signature(url, params)}
        status, body = self.post(url, params, headers)
        call.webhooks += 1
        if status != 200:
            raise RuntimeError(f"{url} answered {status}: {body[:200]}")
        return body

    def play(
        self, presses: list[str], *, comment_seconds: int = 12, transcript: str | None = None, max_turns: int = 60
    ) -> PlayedCall:
        """Play one call, pressing `presses` in order at each menu; return what was heard."""
        call = PlayedCall(new_sid("CA"))
        base = {
            "CallSid": call.call_sid,
            "AccountSid": self.account_sid,
            "From": self.from_number,
            "To": self.to_number,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        keys = list(presses)
        url, params = self.base_url + "/twilio/voice", {**base, "CallStatus": "ringing"}
        hung_up = False
        for _ in range(max_turns):
            root = ET.fromstring(self.send(call, url, params))
            url = None
            for verb in root:
                if verb.tag == "Say":
                    call.heard.append(verb.text or "")
                elif verb.tag == "Gather":
                    call.heard.extend(say.text or "" for say in verb if say.tag == "Say")
                    if keys and keys[0] == HANG_UP:
                        hung_up = True
                        break
                    if keys:
                        key = keys.pop(0)
                        if key != NO_KEY:
                            call.heard.append(f"[presses {key}]")
                            url = verb.get("action")
                            params = {**base, "CallStatus": "in-progress", "Digits": key}
                            break
                    call.heard.append("[presses nothing]")
                elif verb.tag == "Record":
                    call.heard.append(f"[beep; records a {comment_seconds}-second comment, then presses #]")
                    url, params = self.record(call, verb, base, comment_seconds, transcript)
                    break
                elif verb.tag == "Redirect":
                    url, params = verb.text, {**base, "CallStatus": "in-progress"}
                    break
                elif verb.tag == "Hangup":
                    break
            if url is None or hung_up:
                break
        call.heard.append("[hangs up]" if hung_up else "[the line hangs up]")
        self.send(
            call,
            self.base_url + "/twilio/status",
            {**base, "CallStatus": "completed", "CallDuration": str(10 + comment_seconds)},
        )
        return call

    def record(self, call: PlayedCall, verb, base: dict, seconds: int, transcript: str | None):
        """Twilio's side of `<Record>`: the callbacks, then the action request to follow."""
        sid = new_sid("RE")
        media = f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}/Recordings/{sid}"
        recording = {**base, "RecordingSid": sid, "RecordingUrl": media, "RecordingDuration": str(seconds)}
        if verb.get("recordingStatusCallback"):
            self.send(
                call,
                verb.get("recordingStatusCallback"),
                {
                    **recording,
                    "RecordingStatus": "completed",
                    "RecordingChannels": "1",
                    "RecordingSource": "RecordVerb",
                },
            )
        if verb.get("transcribeCallback") and transcript:
            self.send(
                call,
                verb.get("transcribeCallback"),
                {
                    **recording,
                    "TranscriptionSid": new_sid("TR"),
                    "TranscriptionText": transcript,
                    "TranscriptionStatus": "completed",
                    "TranscriptionUrl": media + "/Transcriptions",
                },
            )
        return verb.get("action"), {**recording, "CallStatus": "in-progress", "Digits": "#"}
