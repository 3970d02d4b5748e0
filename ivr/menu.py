"""The keypad menus' rules, in one place: the IVR (ivr/routes.py, ivr/twiml.py), the simulated
caller (ivr/caller.py), the benchmark's ceiling and the tests all read them from here.

Which digit is which language and which topic is the line's script (`config/line.yaml`, the
console); everything else a caller presses is fixed here.
"""

from __future__ import annotations

from models.calls import STANCES as STANCE_FOR_KEY

# Every menu takes one key (`<Gather numDigits>`), but the ZIP code's, which takes five, or
# fewer ended by the pound key (`<Gather numDigits="5" finishOnKey="#">`). Pound alone, or
# nothing, skips it: Twilio then follows the `<Redirect>` after the `<Gather>`, with no `Digits`.
MENU_KEYS = 1
ZIP_KEYS = 5
ZIP_FINISH_KEY = "#"
# A short or unreadable ZIP code is asked for once more; then the call goes on without one.
MAX_ZIP_TRIES = 2
# At any menu: hear it again, without counting a miss.
REPEAT_KEY = "*"
# At the language menu, star pressed this many times in a row makes the (repeated) menu take
# several keys, ended by `#` or a pause: a staff member then types a one-time code to record a
# prompt by phone. A caller hears the same menu, and a wrong code is a wrong key.
STAFF_STARS = 2
# At the position menu: the key for each position (support, oppose, other). The names are the
# facts' vocabulary, kept with the facts in models/calls.py.
STANCE_KEYS: dict[str, str] = STANCE_FOR_KEY
KEY_FOR_STANCE: dict[str, str] = {stance: key for key, stance in STANCE_FOR_KEY.items()}
# At "another topic?": comment on another topic, or end the call.
ANOTHER_TOPIC_KEY = "1"
END_CALL_KEY = "2"
# `<Record finishOnKey>`: the caller presses it when the comment is done.
FINISH_KEY = "#"
# Twilio's `Digits` on the `<Record>` action when the caller hung up while recording; in a list
# of keys to press (`flask line call`, the tests' callers), hang up at this point.
HANG_UP = "hangup"
# In a list of keys to press: press nothing, so that the menu times out.
NO_KEY = "-"
# The third miss at a menu takes its fall-back: the first language, the general topic, a
# comment without a position, or the end of the call.
MAX_MISSES = 3
# A recording Twilio did not hear is offered once more; then "another topic?".
MAX_EMPTY_RECORDINGS = 2
# Choices made on the rescue paths (an error, the Fallback URL) get steps of their own:
# RESCUE_STEP + the step that failed.
RESCUE_STEP = 1000
