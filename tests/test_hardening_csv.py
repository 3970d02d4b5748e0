"""No CSV the line writes can carry a spreadsheet formula: a cell that begins with `=`, `+`,
`-`, `@`, a tab or a carriage return is written with a leading `'` (OWASP's advice), in the
export's comments.csv, the console's counts CSV and the API's counts.csv."""

from __future__ import annotations

import csv
import io
import re
import zipfile

import pytest
from sqlalchemy import select

from models import Topic, db
from tests.console_support import leave_comment, wav_bytes

FORMULAS = ['=HYPERLINK("https://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx=1", "\r=1"]


def neutral(cell: str) -> bool:
    return not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize("value", FORMULAS)
def test_one_function_neutralises_a_formula_and_leaves_other_cells(value):
    from staff.csvfiles import spreadsheet_safe

    assert spreadsheet_safe(value) == "'" + value
    assert spreadsheet_safe("Fix the lights.") == "Fix the lights."
    assert spreadsheet_safe(-3) == -3 and spreadsheet_safe("") == "" and spreadsheet_safe(None) is None


@pytest.fixture
def formula_topic(app):
    """The budget topic renamed to a formula, as an admin could."""
    with app.app_context():
        topic = db.session.scalar(select(Topic).where(Topic.slug == "budget"))
        topic.names = {code: "=1+2" for code in topic.names}
        db.session.commit()


def test_the_export_neutralises_formulas(media_server, formula_topic, sign_in, twilio):
    for text in FORMULAS:
        _, sid, _ = leave_comment(twilio, "1", "1", text=text)
        media_server.audio[sid] = wav_bytes(0.1)
    staff = sign_in("staff")
    today = re.search(r'name="from" value="([\d-]+)"', staff.get("/export").get_data(as_text=True)).group(1)
    response = staff.post("/export", {"from": today, "to": today, "topic": ["budget"]})
    bundle = zipfile.ZipFile(io.BytesIO(response.data))
    rows = list(csv.reader(io.StringIO(bundle.read("comments.csv").decode(), newline="")))
    transcripts = [row[6] for row in rows[1:]]
    assert len(transcripts) == len(FORMULAS) and "'" + FORMULAS[0] in transcripts
    assert all(neutral(cell) for row in rows for cell in row), rows


def test_the_consoles_counts_csv_neutralises_formulas(formula_topic, sign_in, twilio):
    leave_comment(twilio, "1", "1")
    response = sign_in("staff").get("/counts.csv")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))
    assert ["budget", "'=1+2"] == rows[1][:2]
    assert all(neutral(cell) for row in rows for cell in row), rows


def test_the_apis_counts_csv_neutralises_formulas(formula_topic, api, twilio):
    leave_comment(twilio, "1", "1")
    rows = list(csv.reader(io.StringIO(api("/api/v1/counts.csv").get_data(as_text=True), newline="")))
    assert rows[1][:3] == ["budget", "1", "'=1+2"]
    assert all(neutral(cell) for row in rows for cell in row), rows
