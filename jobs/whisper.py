"""The offline transcriber: faster-whisper (CTranslate2) with Whisper weights from a folder.

Optional: `pip install -r requirements-whisper.txt`. Loaded once per worker process, on the
first comment it must transcribe; never in the web process. Needs no network at run time."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.json")
_loaded: dict[tuple, WhisperTranscriber] = {}
_lock = threading.Lock()


class TranscriberUnavailable(RuntimeError):
    """The transcriber cannot run here; the message says what the operator must provide."""


@dataclass(frozen=True)
class Heard:
    text: str
    language: str | None
    audio_seconds: float
    seconds: float  # time taken


class WhisperTranscriber:
    def __init__(self, model_dir: str, *, threads: int = 0, compute_type: str = "int8", beam_size: int = 5) -> None:
        missing = [name for name in MODEL_FILES if not (Path(model_dir) / name).is_file()]
        if missing:
            raise TranscriberUnavailable(
                f"WHISPER_MODEL_DIR {model_dir!r} lacks {', '.join(missing)} (see docs/worker.md)"
            )
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise TranscriberUnavailable(
                "faster-whisper is not installed: pip install -r requirements-whisper.txt"
            ) from None
        started = time.monotonic()
        self.model = WhisperModel(
            model_dir,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=threads or os.cpu_count() or 1,
            num_workers=1,
        )
        self.beam_size = beam_size
        self.engine = f"faster-whisper {Path(model_dir).name} {compute_type}"[:64]
        log.info("loaded the Whisper model in %s in %.1f s", model_dir, time.monotonic() - started)

    def transcribe(self, path: str, language: str | None) -> Heard:
        """Transcribe an audio file in the caller's `language` (en-US, es-US, ht: Whisper is
        told its first part, `whisper_language`); None: let the model tell."""
        started = time.monotonic()
        segments, info = self.model.transcribe(
            path,
            language=whisper_language(language),
            beam_size=self.beam_size,
            vad_filter=True,
            condition_on_previous_text=False,
        )
        text = " ".join(segment.text.strip() for segment in segments).strip()
        heard = Heard(text, info.language, info.duration, time.monotonic() - started)
        log.info("transcribed %.1f s of audio in %.1f s (%s)", heard.audio_seconds, heard.seconds, heard.language)
        return heard


def whisper_language(language: str | None) -> str | None:
    """The code Whisper knows a line's language by: en-US -> en, es-US -> es, ht -> ht
    (Haitian Creole is one of Whisper's languages)."""
    return language.split("-")[0].lower() if language else None


def transcriber(config) -> WhisperTranscriber:
    """This process's transcriber for the configured model, loaded on first use."""
    key = (
        config["WHISPER_MODEL_DIR"],
        config["WHISPER_THREADS"],
        config["WHISPER_COMPUTE_TYPE"],
        config["WHISPER_BEAM_SIZE"],
    )
    with _lock:
        if key not in _loaded:
            _loaded[key] = WhisperTranscriber(key[0], threads=key[1], compute_type=key[2], beam_size=key[3])
        return _loaded[key]
