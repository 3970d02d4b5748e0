"""Settings, read from the environment once, in one place.

`load_settings()` returns the Flask config mapping for `create_app`. Production refuses to
start without its secrets and names the missing one; development generates local secrets,
keeps them in `instance/dev-secrets.json` so that a restart (and `flask line call`) uses the
same ones, and says so.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import logging
import math
import os
import secrets
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_DIR = CONFIG_DIR.parent
DEFAULT_LINE_CONFIG = CONFIG_DIR / "line.yaml"
CALLER_NUMBER_MODES = ("raw", "hash", "none")
SECRETS = ("SECRET_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
TWILIO_API = "https://api.twilio.com"
# Development's stand-in for Twilio's recording media, on the line itself (ivr/dev_media.py).
DEV_TWILIO_PATH = "/dev/twilio"
TRANSCRIBER_NAMES = ("whisper", "none")
# The flags' settings at most: calls a day or in a burst, a burst's minutes (a day), a short
# comment's seconds.
FLAG_COUNT_LIMIT = 1_000_000
FLAG_BURST_MINUTES_LIMIT = 24 * 60
FLAG_SHORT_SECONDS_LIMIT = 24 * 60 * 60


class SettingsError(click.ClickException, RuntimeError):
    """The environment does not describe a line that can start; the message says why.

    A ClickException, so that a `flask` command whose app cannot be built prints the message as
    one line on stderr ("Error: ...") and exits with status 1, not a traceback; gunicorn's
    start says it the same way (config/gunicorn.py)."""


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever spelling the operator's platform gives."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _dev_secrets(instance_dir: Path) -> dict[str, str]:
    path = instance_dir / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    made = {
        "SECRET_KEY": secrets.token_hex(32),
        "TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
    }
    instance_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(made, indent=2))
    path.chmod(0o600)
    log.warning("development: generated local secrets in %s", path)
    return made


def load_settings(env: dict[str, str] | None = None, instance_dir: Path | None = None) -> dict:
    """Read the line's settings from `env` (default: the process environment).

    Raises SettingsError naming the first setting that is missing or wrong.
    """
    env = dict(os.environ if env is None else env)
    instance_dir = Path(env.get("INSTANCE_DIR") or instance_dir or PROJECT_DIR / "instance")
    app_env = env.get("APP_ENV", "production").strip().lower()
    if app_env not in ("production", "development", "test"):
        raise SettingsError(f"APP_ENV must be production, development or test, not {app_env!r}")

    found = {name: env.get(name, "").strip() for name in SECRETS}
    missing = [name for name, value in found.items() if not value]
    if missing and app_env == "production":
        raise SettingsError(
            f"{missing[0]} is not set: production needs {', '.join(SECRETS)} (see .env.example);"
            " APP_ENV=development generates local ones"
        )
    twilio_generated = any(name.startswith("TWILIO_") for name in missing)
    if missing:
        generated = _dev_secrets(instance_dir)
        for name in missing:
            found[name] = generated[name]
        log.warning("%s: using generated local %s", app_env, ", ".join(missing))

    caller_numbers = env.get("CALLER_NUMBERS", "hash").strip().lower()
    if caller_numbers not in CALLER_NUMBER_MODES:
        raise SettingsError(f"CALLER_NUMBERS must be one of raw, hash, none, not {caller_numbers!r}")

    timezone = env.get("LINE_TIMEZONE", "UTC").strip() or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"LINE_TIMEZONE {timezone!r} is not an IANA time zone name") from None

    line_config = Path(env.get("LINE_CONFIG") or DEFAULT_LINE_CONFIG)
    if not line_config.is_file():
        raise SettingsError(f"LINE_CONFIG {str(line_config)!r} is not a file")

    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_dir / 'commentline.db'}"
    public_base = env.get("PUBLIC_BASE_URL", "").strip().rstrip("/")
    if public_base and not public_base.startswith(("http://", "https://")):
        raise SettingsError("PUBLIC_BASE_URL must start with http:// or https://")

    trusted_proxies = number_setting(env, "TRUSTED_PROXIES", 0, int)

    return {
        "APP_ENV": app_env,
        "DEBUG": False,
        "TESTING": app_env == "test",
        "SECRET_KEY": found["SECRET_KEY"],
        "TWILIO_ACCOUNT_SID": found["TWILIO_ACCOUNT_SID"],
        "TWILIO_AUTH_TOKEN": found["TWILIO_AUTH_TOKEN"],
        "CALLER_HASH_KEY": env.get("CALLER_HASH_KEY", "").strip() or found["SECRET_KEY"],
        "CALLER_NUMBERS": caller_numbers,
        "LINE_TIMEZONE": timezone,
        "LINE_CONFIG": str(line_config),
        "PUBLIC_BASE_URL": public_base,
        "TRUSTED_PROXIES": trusted_proxies,
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
        "INSTANCE_DIR": str(instance_dir),
        # Twilio's bodies are a few kB; anything near this is not Twilio.
        "MAX_CONTENT_LENGTH": number_setting(env, "MAX_CONTENT_LENGTH", 64 * 1024, int),
        "LINE_CACHE_SECONDS": number_setting(env, "LINE_CACHE_SECONDS", 1),
        "TWILIO_API_BASE": _twilio_api_base(env, app_env, twilio_generated),
        "RECORDINGS_DIR": env.get("RECORDINGS_DIR") or str(instance_dir / "recordings"),
        "SPOOL_DIR": env.get("SPOOL_DIR") or str(instance_dir / "spool"),
        "DB_COOL_OFF_SECONDS": number_setting(env, "DB_COOL_OFF_SECONDS", 2),
        "SQLITE_BUSY_SECONDS": number_setting(env, "SQLITE_BUSY_SECONDS", 3),
        # Webhooks answer once their facts are journalled; a writer thread stores them in
        # batches (facts/journal.py). Off: each webhook commits before it answers. Off by
        # default only with APP_ENV=test; the test suite turns it on, as production runs.
        "WRITE_BEHIND": _flag(env, "WRITE_BEHIND", app_env != "test"),
        "JOURNAL_FSYNC": _flag(env, "JOURNAL_FSYNC", False),
        # How long the writer lets a batch fill: the counts lag the calls by about this much.
        # A batch costs nearly the same whatever its size (docs/benchmark.md).
        "WRITE_BEHIND_GATHER_MS": number_setting(env, "WRITE_BEHIND_GATHER_MS", 1000),
        "LOG_FORMAT": env.get("LOG_FORMAT") or ("json" if app_env == "production" else "text"),
        "LOG_LEVEL": (env.get("LOG_LEVEL") or "INFO").upper(),
        "METRICS_TOKEN": env.get("METRICS_TOKEN", "").strip(),
        # The staff console: a sign-in lasts this many hours; Secure cookies always when set.
        "CONSOLE_SESSION_HOURS": number_setting(env, "CONSOLE_SESSION_HOURS", 12) or 12,
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "").strip().lower() in ("1", "true", "yes"),
        # Where links for people (reset and invitation links) point: never the request's Host.
        "LINK_BASE_URL": link_base_url(env, app_env, public_base),
        **sign_in_limits(env),
        **worker_settings(env, instance_dir),
        **flag_settings(env),
        **callback_settings(env, app_env, instance_dir),
        **public_settings(env),
        **prompt_settings(env),
    }


def prompt_settings(env: dict[str, str]) -> dict:
    """Recorded prompts (models/prompts.py): what an uploaded or phoned-in file may be, how
    long a code to record one by phone lasts, and how many wrong codes the line takes in an
    hour, from all callers together, before it refuses every code until the hour has passed."""
    return {
        "PROMPT_MIN_SECONDS": number_setting(env, "PROMPT_MIN_SECONDS", 0.5),
        "PROMPT_MAX_SECONDS": number_setting(env, "PROMPT_MAX_SECONDS", 60) or 60,
        "PROMPT_MAX_BYTES": number_setting(env, "PROMPT_MAX_BYTES", 20 * 1024 * 1024, int) or 20 * 1024 * 1024,
        "PROMPT_CODE_MINUTES": number_setting(env, "PROMPT_CODE_MINUTES", 15) or 15,
        "PROMPT_WRONG_CODES_PER_HOUR": number_setting(env, "PROMPT_WRONG_CODES_PER_HOUR", 10, int),
    }


def public_settings(env: dict[str, str]) -> dict:
    """The public tally (public/) and the daily receipts (receipts/): off unless PUBLIC_TALLY
    is on; answers cached PUBLIC_CACHE_SECONDS; reference lookups limited per address to
    PUBLIC_CHECKS_PER_ADDRESS within PUBLIC_CHECK_WINDOW_MINUTES; receipts signed with
    TALLY_SIGNING_KEY (`flask tally keygen`), a day closed TALLY_CLOSE_GRACE_MINUTES after it
    ends, and each receipt sent to TALLY_PUBLISH_URL and/or TALLY_PUBLISH_S3_BUCKET."""
    publish_url = env.get("TALLY_PUBLISH_URL", "").strip()
    if publish_url and not publish_url.startswith(("http://", "https://")):
        raise SettingsError("TALLY_PUBLISH_URL must start with http:// or https://")
    signing_key = env.get("TALLY_SIGNING_KEY", "").strip()
    if signing_key:
        try:
            raw = base64.urlsafe_b64decode(signing_key.encode() + b"=" * (-len(signing_key) % 4))
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) != 32:
            raise SettingsError("TALLY_SIGNING_KEY is not a key `flask tally keygen` made (32 bytes in base64)")
    return {
        "PUBLIC_TALLY": _flag(env, "PUBLIC_TALLY", False),
        "PUBLIC_CACHE_SECONDS": number_setting(env, "PUBLIC_CACHE_SECONDS", 5),
        "PUBLIC_CHECKS_PER_ADDRESS": number_setting(env, "PUBLIC_CHECKS_PER_ADDRESS", 20, int),
        "PUBLIC_CHECK_WINDOW_MINUTES": number_setting(env, "PUBLIC_CHECK_WINDOW_MINUTES", 15) or 15,
        "TALLY_SIGNING_KEY": signing_key,
        "TALLY_CLOSE_GRACE_MINUTES": number_setting(env, "TALLY_CLOSE_GRACE_MINUTES", 15),
        "TALLY_PUBLISH_URL": publish_url,
        "TALLY_PUBLISH_S3_BUCKET": env.get("TALLY_PUBLISH_S3_BUCKET", "").strip(),
        "TALLY_PUBLISH_S3_PREFIX": env.get("TALLY_PUBLISH_S3_PREFIX", "").strip().strip("/") or "receipts",
    }


def flag_settings(env: dict[str, str]) -> dict:
    """The rules that flag calls (models/flags.py) and the block list's cache. Each rule is on
    by default; a count of 0 (or false) switches it off."""
    return {
        # Bounded so that every figure fits the databases' integers and a burst's window its dates.
        "FLAG_REPEAT_CALLS_PER_DAY": number_setting(env, "FLAG_REPEAT_CALLS_PER_DAY", 5, int, FLAG_COUNT_LIMIT),
        "FLAG_BURST_CALLS": number_setting(env, "FLAG_BURST_CALLS", 3, int, FLAG_COUNT_LIMIT),
        "FLAG_BURST_MINUTES": number_setting(env, "FLAG_BURST_MINUTES", 10, float, FLAG_BURST_MINUTES_LIMIT),
        "FLAG_SHORT_COMMENT_SECONDS": number_setting(
            env, "FLAG_SHORT_COMMENT_SECONDS", 1, int, FLAG_SHORT_SECONDS_LIMIT
        ),
        "FLAG_SHORT_COMMENTS": _flag(env, "FLAG_SHORT_COMMENTS", True),
        "FLAG_UNVERIFIED_CALLERS": _flag(env, "FLAG_UNVERIFIED_CALLERS", True),
        "BLOCK_LIST_CACHE_SECONDS": number_setting(env, "BLOCK_LIST_CACHE_SECONDS", 5),
    }


def callback_settings(env: dict[str, str], app_env: str, instance_dir: Path) -> dict:
    """Call-back requests (models/callbacks.py): the key their numbers are encrypted with
    (a Fernet key of its own, never SECRET_KEY), and how many days a number is kept.
    Development and tests generate a local key; production without one takes no call-back
    requests (topics that offer them do not, and the console says why)."""
    key = env.get("CALLBACK_KEY", "").strip()
    if key:
        try:
            from cryptography.fernet import Fernet

            Fernet(key.encode())
        except (ValueError, TypeError):
            raise SettingsError(
                "CALLBACK_KEY must be a Fernet key (32 url-safe base64-encoded bytes): make one with"
                " `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
            ) from None
    elif app_env != "production":
        key = _dev_callback_key(instance_dir)
    return {
        "CALLBACK_KEY": key,
        "CALLBACK_KEEP_DAYS": number_setting(env, "CALLBACK_KEEP_DAYS", 30, int),
    }


def _dev_callback_key(instance_dir: Path) -> str:
    from cryptography.fernet import Fernet

    path = instance_dir / "dev-callback-key"
    if path.exists():
        return path.read_text().strip()
    instance_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    path.write_text(key)
    path.chmod(0o600)
    return key


def link_base_url(env: dict[str, str], app_env: str, public_base: str) -> str:
    """PUBLIC_BASE_URL; without it, in development and tests, http://localhost:PORT (the port
    gunicorn serves on, default 5000); in production nothing: the console then makes no links
    and says why."""
    if public_base or app_env == "production":
        return public_base
    return f"http://localhost:{web_port(env)}"


def sign_in_limits(env: dict[str, str]) -> dict:
    """How failed sign-ins are throttled (staff/throttle.py): per address and account, free
    failures then a wait that doubles from SIGN_IN_BACKOFF_SECONDS up to
    SIGN_IN_BACKOFF_MAX_SECONDS (one free failure each while the account is under attack,
    that is, has SIGN_IN_FAILURES_PER_ACCOUNT failures within the window from anywhere); per
    address over all accounts, SIGN_IN_FAILURES_PER_ADDRESS within the window."""
    return {
        "SIGN_IN_WINDOW_MINUTES": number_setting(env, "SIGN_IN_WINDOW_MINUTES", 15) or 15,
        "SIGN_IN_FAILURES_PER_PAIR": number_setting(env, "SIGN_IN_FAILURES_PER_PAIR", 5, int),
        "SIGN_IN_FAILURES_PER_ADDRESS": number_setting(env, "SIGN_IN_FAILURES_PER_ADDRESS", 20, int),
        "SIGN_IN_FAILURES_PER_ACCOUNT": number_setting(env, "SIGN_IN_FAILURES_PER_ACCOUNT", 10, int),
        "SIGN_IN_BACKOFF_SECONDS": number_setting(env, "SIGN_IN_BACKOFF_SECONDS", 30),
        "SIGN_IN_BACKOFF_MAX_SECONDS": number_setting(env, "SIGN_IN_BACKOFF_MAX_SECONDS", 900),
    }


def _twilio_api_base(env: dict[str, str], app_env: str, twilio_generated: bool) -> str:
    """Where recordings are fetched from: TWILIO_API_BASE, else Twilio's API; in development
    with generated Twilio credentials (no account: every call is simulated), the line's own
    stand-in on the local web server (`web_port`)."""
    given = env.get("TWILIO_API_BASE", "").strip()
    if given:
        return given.rstrip("/")
    if app_env == "development" and twilio_generated:
        return f"http://127.0.0.1:{web_port(env)}{DEV_TWILIO_PATH}"
    return TWILIO_API


def web_port(env: dict[str, str]) -> int:
    """The port the line's web server listens on locally: WEB_PORT (which `make run` sets for
    its web server, its worker and `flask` commands alike, since honcho gives each of its
    processes a PORT of its own), else PORT, else 5000."""
    return number_setting(env, "WEB_PORT", number_setting(env, "PORT", 5000, int), int)


def number_setting(env, name: str, default: float, kind: type = float, at_most: float | None = None):
    """The setting `name` from `env` as a `kind` (float or int), or `default` when unset.
    Raises SettingsError naming the setting when it is not a finite number of that kind, is
    negative, or is over `at_most`. Every numeric setting is read here."""
    text = (env.get(name) or "").strip()
    try:
        value = kind(text) if text else kind(default)
    except ValueError:
        raise SettingsError(f"{name} must be a {'whole ' if kind is int else ''}number, not {text!r}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, not {text!r}")
    if value < 0:
        raise SettingsError(f"{name} must not be negative, not {text!r}")
    if at_most is not None and value > at_most:
        limit = int(at_most) if float(at_most).is_integer() else at_most
        raise SettingsError(f"{name} must be at most {limit:,}, not {text!r}")
    return value


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise SettingsError(f"{name} must be true or false, not {value!r}")
    return value in ("1", "true", "yes", "on")


def transcribers(spec: str) -> dict[str, str]:
    """`es-US=whisper,en-US=whisper,*=none` as a mapping; `*` is every other language."""
    found = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        language, _, name = part.partition("=")
        if not name.strip() or name.strip() not in TRANSCRIBER_NAMES:
            raise SettingsError(f"TRANSCRIBERS: {part!r} must be LANGUAGE=" + "|".join(TRANSCRIBER_NAMES))
        found[language.strip()] = name.strip()
    return found


def worker_settings(env: dict[str, str], instance_dir: Path) -> dict:
    """The background worker's settings: queue, media checks, storage, transcription, retention
    (see docs/worker.md)."""
    backend = env.get("RECORDINGS_STORAGE", "local").strip().lower() or "local"
    if backend not in ("local", "s3"):
        raise SettingsError(f"RECORDINGS_STORAGE must be local or s3, not {backend!r}")
    if backend == "s3" and not env.get("S3_BUCKET", "").strip():
        raise SettingsError("S3_BUCKET is not set: RECORDINGS_STORAGE=s3 needs a bucket")
    media_format = env.get("RECORDING_FORMAT", "wav").strip().lower() or "wav"
    if media_format not in ("wav", "mp3"):
        raise SettingsError(f"RECORDING_FORMAT must be wav or mp3, not {media_format!r}")
    return {
        "JOB_MAX_ATTEMPTS": number_setting(env, "JOB_MAX_ATTEMPTS", 8, int) or 1,
        "JOB_BACKOFF_SECONDS": number_setting(env, "JOB_BACKOFF_SECONDS", 15),
        "JOB_BACKOFF_MAX_SECONDS": number_setting(env, "JOB_BACKOFF_MAX_SECONDS", 1800),
        "JOB_LEASE_SECONDS": number_setting(env, "JOB_LEASE_SECONDS", 120) or 120,
        "WORKER_POLL_SECONDS": number_setting(env, "WORKER_POLL_SECONDS", 1),
        "WORKER_SWEEP_SECONDS": number_setting(env, "WORKER_SWEEP_SECONDS", 300),
        "RECORDING_FORMAT": media_format,
        "RECORDING_MAX_BYTES": number_setting(env, "RECORDING_MAX_BYTES", 100 * 1024 * 1024, int),
        "MEDIA_TIMEOUT_SECONDS": number_setting(env, "MEDIA_TIMEOUT_SECONDS", 30),
        "DELETE_FROM_TWILIO": _flag(env, "DELETE_FROM_TWILIO", False),
        "RECORDINGS_STORAGE": backend,
        "S3_BUCKET": env.get("S3_BUCKET", "").strip(),
        "S3_PREFIX": env.get("S3_PREFIX", "").strip().strip("/"),
        "S3_ENDPOINT_URL": env.get("S3_ENDPOINT_URL", "").strip() or None,
        "S3_REGION": env.get("S3_REGION", "").strip() or None,
        "TRANSCRIBERS": transcribers(env.get("TRANSCRIBERS", "") or "*=whisper"),
        "TWILIO_TRANSCRIPT_GRACE_SECONDS": number_setting(env, "TWILIO_TRANSCRIPT_GRACE_SECONDS", 900),
        "WHISPER_MODEL_DIR": env.get("WHISPER_MODEL_DIR", "").strip() or str(instance_dir / "whisper-model"),
        "WHISPER_THREADS": number_setting(env, "WHISPER_THREADS", 0, int),
        "WHISPER_COMPUTE_TYPE": env.get("WHISPER_COMPUTE_TYPE", "").strip() or "int8",
        "WHISPER_BEAM_SIZE": number_setting(env, "WHISPER_BEAM_SIZE", 5, int) or 1,
        "RETENTION_DAYS": number_setting(env, "RETENTION_DAYS", 0, int),
        "RETENTION_KEEP_TRANSCRIPTS": _flag(env, "RETENTION_KEEP_TRANSCRIPTS", True),
    }


# The youngest generation's threshold once a web worker has loaded the app (Python's is 700).
GC_YOUNG_THRESHOLD = 7000


def settle_garbage_collector() -> None:
    """What a web worker does once it has loaded the app (config/gunicorn.py): freeze what it
    loaded (the app, its modules, the line's script; over 100,000 objects) out of the garbage
    collector's reach, so that no collection traverses them again, and collect the youngest
    generation a tenth as often. Collection stays on for the reference cycles that requests
    leave behind. What it saves under load: docs/benchmark.md, "Garbage collection"."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
