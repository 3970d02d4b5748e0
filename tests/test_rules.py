"""The merge rules (facts/rules.py), without a database: every rule is a join, so any order,
grouping and repetition of the same facts gives the same row."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from facts import rules
from facts.writer import RECORDING_FIELDS

MOMENTS = st.builds(lambda s: datetime(2026, 11, 30, 10, 59) + timedelta(seconds=s), st.integers(0, 180))
call_values = st.fixed_dictionaries(
    {
        "account_sid": st.sampled_from([None, "AC1"]),
        "from_number": st.sampled_from([None, "+15035550101"]),
        "caller_hash": st.sampled_from([None, "h1"]),
        "to_number": st.sampled_from([None, "+15035550199"]),
        "from_city": st.sampled_from([None, "PORTLAND"]),
        "from_state": st.none(),
        "from_zip": st.sampled_from([None, "97201"]),
        "from_country": st.none(),
        "caller_name": st.none(),
        "language": st.sampled_from([None, "en"]),
        "stir_verstat": st.sampled_from([None, "No-TN-Validation"]),  # every request of a call carries the same
        "caller_withheld": st.sampled_from([None, True]),
        "blocked": st.sampled_from([None, True]),
        "started_at": MOMENTS,
    }
)


def merged(values: list[dict]) -> dict | None:
    row = None
    for value in values:
        row = rules.merge_call(row, value)
    return row


@given(st.lists(call_values, min_size=1, max_size=6), st.randoms())
def test_a_call_row_is_the_same_in_any_order_and_repetition(values, rng):
    shuffled = values + rng.sample(values, k=rng.randint(0, len(values)))
    rng.shuffle(shuffled)
    assert merged(shuffled) == merged(values)


@given(call_values, call_values)
def test_identity_is_never_emptied_and_the_start_is_the_earliest(first, late):
    row = rules.merge_call(rules.merge_call(None, first), late)
    for name in rules.IDENTITY_FIELDS:
        assert row[name] == (first[name] if first[name] is not None else late[name])
    assert row["started_at"] == min(first["started_at"], late["started_at"])


STATUSES = st.tuples(
    st.sampled_from(["ringing", "in-progress", "completed", "busy", "no-answer"]),
    st.integers(0, 60),
    st.one_of(st.none(), MOMENTS),
)


@given(st.lists(STATUSES, min_size=1, max_size=5), st.randoms())
def test_the_standing_status_is_the_same_in_any_order(statuses, rng):
    def standing(items):
        result = None
        for item in items:
            result = rules.standing_status(result, item)
        return result

    shuffled = statuses[:]
    rng.shuffle(shuffled)
    assert standing(shuffled) == standing(statuses)
    if any(s[0] in rules.FINAL_CALL_STATUSES for s in statuses):
        assert standing(statuses)[0] in rules.FINAL_CALL_STATUSES  # a final status is never undone


def empty_recording() -> dict:
    return dict.fromkeys(RECORDING_FIELDS)


recording_facts = st.lists(
    st.one_of(
        st.tuples(
            st.just("recording_action"),
            st.fixed_dictionaries(
                {
                    "at": MOMENTS,
                    "number": st.sampled_from([None, 5, 9]),
                    "stance": st.just("support"),
                    "language": st.just("en"),
                    "step": st.just(4),
                    "duration": st.sampled_from([None, 7]),  # Twilio reports one length
                    "finished_by": st.just("#"),
                    "media_url": st.just("https://api.twilio.com/RE1"),
                }
            ),
        ),
        st.tuples(
            st.just("recording_status"),
            st.fixed_dictionaries(
                {
                    "at": MOMENTS,
                    "status": st.sampled_from(["in-progress", "completed"]),
                    "duration": st.sampled_from([None, 7]),
                    "media_url": st.just("https://api.twilio.com/RE1"),
                    "error_code": st.none(),
                }
            ),
        ),
    ),
    min_size=1,
    max_size=5,
)


def filled(facts) -> tuple[dict, set]:
    row, aliases = empty_recording(), set()
    for name, args in facts:
        aliases |= set(rules.fill_recording(row, name, args, 3 if name == "recording_action" else None))
    aliases.discard(row["number"])
    return row, aliases


@given(recording_facts)
def test_a_recording_is_the_same_in_any_order(facts):
    if len(facts) > 4:
        facts = facts[:4]
    results = {repr(filled(list(order))) for order in itertools.permutations(facts)}
    assert len(results) == 1


def test_a_late_start_moves_what_the_call_counted_for():
    before = rules.CallState(datetime(2026, 11, 30, 11, 0, 2), None, {1: "support"}, rules.Counter({1: 1}))
    after = rules.CallState(datetime(2026, 11, 30, 10, 59, 58), "h1", {1: "support"}, rules.Counter({1: 1}))
    counts = rules.call_counts(before)
    counts.move(before, after)
    assert counts.hourly_rows() == rules.call_counts(after).hourly_rows()
    assert +counts.caller_hours == rules.call_counts(after).caller_hours
    assert counts.first_hours == {(0, "h1"): datetime(2026, 11, 30, 10), (1, "h1"): datetime(2026, 11, 30, 10)}
