"""Measure the offline transcriber on this machine: seconds taken per second of phone audio.

    .venv/bin/python -m tests.worker.measure_whisper [MODEL_DIR]

Makes English and Spanish phone audio (espeak-ng, 8 kHz mono) of one sentence, one paragraph,
three paragraphs, and the three read twice (over two minutes, the second time by another
voice), and prints per clip the audio length, the time taken, their ratio and how many words
came out. The load average is printed too: other work on the machine slows it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from jobs.whisper import WhisperTranscriber

from .sound import speech_wav, wav_seconds

ENGLISH = [
    "Good evening. My name is Maria and I live on Oak Street near the river. I am calling about the proposed "
    "city budget. I think the library needs more money, because the children in our neighborhood use it every "
    "afternoon.",
    "The bus on route nine is always late, and the sidewalks near the school are broken. Please fix the street "
    "lights before the winter comes, because it gets dark very early and people do not feel safe.",
    "I also want to say that the new park is wonderful. My family goes there every weekend. Thank you for "
    "listening to my comment, and thank you to the people who keep the park so clean.",
]
SPANISH = [
    "Buenas tardes. Me llamo José y vivo en la calle Roble, cerca del río. Llamo por el presupuesto de la "
    "biblioteca. Creo que la biblioteca necesita más dinero, porque los niños del barrio la usan todas las tardes.",
    "El autobús de la ruta nueve siempre llega tarde, y las aceras cerca de la escuela están rotas. Por favor, "
    "arreglen las luces de la calle antes del invierno.",
    "También quiero decir que el nuevo parque es maravilloso. Mi familia va allí todos los fines de semana. "
    "Gracias por escuchar mi comentario.",
]
VOICES = {"en-US": (ENGLISH, ("en-us", "en-gb"), 160), "es-US": (SPANISH, ("es-419", "es"), 135)}


def main(model_dir: str) -> None:
    model = WhisperTranscriber(model_dir)
    folder = Path(tempfile.mkdtemp(prefix="measure-whisper-"))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; model {model_dir}")
    for language, (paragraphs, voices, rate) in VOICES.items():
        first = paragraphs[0].split(". ")[1] + "."
        clips = [
            (first, voices[:1]),
            (paragraphs[0], voices[:1]),
            (" ".join(paragraphs), voices[:1]),
            (" ".join(paragraphs), voices),
        ]
        for n, (text, read_by) in enumerate(clips):
            parts = [speech_wav(folder, f"{language}-{n}-{v}", text, voice=v, rate=rate) for v in read_by]
            path = folder / f"{language}-{n}.wav"
            if len(parts) == 1:
                path.write_bytes(parts[0])
            else:
                import subprocess

                subprocess.run(
                    ["sox", *(str(folder / f"{language}-{n}-{v}.wav") for v in read_by), str(path)], check=True
                )
            seconds = wav_seconds(path.read_bytes())
            heard = model.transcribe(str(path), language)
            print(
                f"{language} {seconds:6.1f} s of audio in {heard.seconds:5.1f} s: "
                f"{heard.seconds / seconds:.2f} x its length; {len(heard.text.split())} words heard "
                f"of {len(text.split()) * len(read_by)} spoken",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".cache/whisper-base")
