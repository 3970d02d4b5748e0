"""The mark on a webhook that the console's "Try the line" played (staff/trial.py).

Such a request is signed as Twilio signs (so it passes the same check and reaches the same
routes) and carries `X-Commentline-Trial: <script>.<mac>`, where the MAC is an HMAC-SHA256 of
the script and the `CallSid` under the app's `SECRET_KEY`: only this server can make one,
and one made for a call is worth nothing for another. A marked call is stored as a test call
(`calls.is_test`: never counted), and with script `draft` it hears the draft script.
"""

from __future__ import annotations

import hashlib
import hmac

TRIAL_HEADER = "X-Commentline-Trial"
TRIAL_SCRIPTS = ("draft", "live")


def _mac(secret: str, script: str, call_sid: str) -> str:
    message = f"try-the-line\n{script}\n{call_sid}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def trial_mark(secret: str, script: str, call_sid: str) -> str:
    """The header's value for a test call of `call_sid` on `script` ("draft" or "live")."""
    if script not in TRIAL_SCRIPTS:
        raise ValueError(f"script must be one of {TRIAL_SCRIPTS}")
    return f"{script}.{_mac(secret, script, call_sid)}"


def trial_script(secret: str, call_sid: str | None, mark: str | None) -> str | None:
    """The script a correctly marked request asks for ("draft" or "live"); None for any request
    without a valid mark for this call (Twilio's own)."""
    if not mark or not call_sid or not secret:
        return None
    script, _, mac = mark.partition(".")
    if script not in TRIAL_SCRIPTS or not hmac.compare_digest(mac, _mac(secret, script, call_sid)):
        return None
    return script
