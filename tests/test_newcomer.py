"""A newcomer's first hour, tried as a newcomer would: in a copy of the project, with a shell
that holds none of the line's settings.

`make serve` is what `make run` does once it has installed (the test uses the suite's own
virtual environment instead of making another): it writes `.flaskenv`, runs the Procfile's
release step, prints the next steps and runs the web server and the worker until Ctrl-C. The
README's `flask` command lines and the next steps `make run` prints are run exactly as written
against that line and in copies of what it prepared. Production's one-line refusal without a
secret, and the Debian packages `make test` installs, are checked here too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from config import PROJECT_DIR
from tests.conftest import free_port

BIN = Path(sys.executable).parent  # the virtual environment the suite runs in: `.venv/bin`
PASSWORD = "a newcomer's password"
LOCAL_BASE = "http://localhost:5000"  # where the README's commands find the line
COPY_LEAVES_OUT = shutil.ignore_patterns(
    ".git", ".venv", "instance", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache", ".flaskenv", ".env", "results"
)


def copy_project(folder: Path) -> Path:
    """The project as a clone gives it: no virtual environment, no instance, no .flaskenv or .env."""
    shutil.copytree(PROJECT_DIR, folder, ignore=COPY_LEAVES_OUT)
    return folder


def newcomer_env(**extra: str) -> dict[str, str]:
    """A newcomer's shell: the virtual environment first on PATH (as `. .venv/bin/activate` puts
    it), and none of the line's settings (no APP_ENV, no secrets, no FLASK_APP)."""
    return {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        **extra,
    }


def command_lines(text: str) -> list[str]:
    """The shell command lines a Markdown text shows in its indented blocks that run `flask`."""
    lines = [line[4:] for line in text.splitlines() if line.startswith("    ") and not line.startswith("     ")]
    return [line for line in lines if re.match(r"^(\S*/)?flask\s|.*\|\s*flask\s", line)]


@dataclass
class Ran:
    command: str
    returncode: int
    stdout: str
    stderr: str

    def worked(self) -> bool:
        return self.returncode == 0 and "Traceback" not in self.stderr and "Error:" not in self.stderr


def run_line(command: str, folder: Path, timeout: float = 120) -> Ran:
    """One command line, run by bash in `folder`, with no terminal: a prompt for a password
    reads it from standard input, given twice."""
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=folder,
        env=newcomer_env(PASSWORD=PASSWORD),
        input=f"{PASSWORD}\n{PASSWORD}\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
    )
    return Ran(command, done.returncode, done.stdout, done.stderr)


def session_processes(session: int) -> list[str]:
    """The command lines of the processes still alive in a session (honcho starts each Procfile
    process in a session of its own)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(cmdline)
    return found


@dataclass
class FirstHour:
    """What happened: the output of `make serve` until Ctrl-C, and each command run."""

    folder: Path
    port: int
    output: str = ""
    sessions: dict[str, int] = field(default_factory=dict)  # Procfile process -> its session
    running: dict[str, list[str]] = field(default_factory=dict)  # what each ran, seen while serving
    next_steps: list[Ran] = field(default_factory=list)
    readme: list[Ran] = field(default_factory=list)
    worker_jobs: str = ""
    stopped_after: float | None = None
    left_running: list[str] = field(default_factory=list)


def wait_for(done, what: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}:\n{log.read_text()[-4000:]}")


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def first_hour(tmp_path_factory) -> FirstHour:
    """`make serve` in a copy of the project on a free port; the next steps it prints and the
    README's `flask` lines run against it, then Ctrl-C; then each README line that needs no
    running line again, each in its own copy of what `make serve` prepared."""
    folder = copy_project(tmp_path_factory.mktemp("newcomer") / "comment-line")
    hour = FirstHour(folder, free_port())
    log = folder.parent / "make-serve.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "serve", f"BIN={BIN}"],
            cwd=folder,
            env=newcomer_env(PORT=str(hour.port)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal of its own, for the Ctrl-C below
        )
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{hour.port}/livez"), "the web server", log)
        wait_for(lambda: re.search(r"worker\.1 .*started \(kinds", log.read_text()), "the worker", log)
        hour.sessions = {
            name: int(pid) for name, pid in re.findall(r"system +\| (\w+)\.1 started \(pid=(\d+)\)", log.read_text())
        }
        hour.running = {name: session_processes(pid) for name, pid in hour.sessions.items()}

        served = f"http://localhost:{hour.port}"
        printed = [line.strip() for line in log.read_text().splitlines() if line.startswith("    ")]
        hour.next_steps = [run_line(line, folder) for line in printed if served in line]
        live = [line for line in command_lines((PROJECT_DIR / "README.md").read_text()) if LOCAL_BASE in line]
        hour.readme += [run_line(line.replace(LOCAL_BASE, served), folder) for line in live]
        copied = r"run end job=\d+ kind=download .* outcome=done"  # the simulated call's audio, copied
        wait_for(lambda: re.search(copied, log.read_text()), "the worker to copy a call's audio", log, timeout=60)
        hour.worker_jobs = run_line("flask worker jobs", folder).stdout
    finally:
        started = time.monotonic()
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in make's terminal
        try:
            make.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
        hour.stopped_after = time.monotonic() - started
        for pid in hour.sessions.values():
            hour.left_running += session_processes(pid)
            if session_processes(pid):
                os.killpg(pid, signal.SIGKILL)
    hour.output = log.read_text()

    def in_a_copy(line: str) -> Ran:
        copy = shutil.copytree(folder, folder.parent / f"copy-{len(list(folder.parent.glob('copy-*')))}")
        return run_line(line, copy)

    hour.next_steps += [in_a_copy(line) for line in printed if served not in line]
    hour.readme += [
        in_a_copy(line) for line in command_lines((PROJECT_DIR / "README.md").read_text()) if LOCAL_BASE not in line
    ]
    return hour


def test_make_run_prints_its_next_steps_for_the_port_it_serves(first_hour):
    served = f"http://localhost:{first_hour.port}"
    assert f"The line is starting on {served}" in first_hour.output
    assert f"--url {served}" in first_hour.output
    assert "5000" not in first_hour.output.split("The line is starting", 1)[1].split("Ctrl-C", 1)[0]
    assert [ran.command.split()[1:3] for ran in first_hour.next_steps] == [["line", "call"], ["users", "create"]]
    for ran in first_hour.next_steps:
        assert ran.worked(), ran
    assert "webhooks, all answered" in first_hour.next_steps[0].stdout


def test_make_run_runs_the_release_step_then_the_web_server_and_the_worker(first_hour):
    output = first_hour.output
    assert "release.1 stopped (rc=0)" in output
    assert output.index("release.1 stopped") < min(output.index("web.1 started"), output.index("worker.1 started"))
    assert any("gunicorn" in cmd for cmd in first_hour.running["web"]), first_hour.running
    assert any("worker run" in cmd for cmd in first_hour.running["worker"]), first_hour.running
    # The comment the simulated call left was taken up by the worker while the web server ran,
    # and its audio copied from the line's development stand-in for Twilio.
    assert re.search(r"#\d+ download RE\w+ done", first_hour.worker_jobs), first_hour.worker_jobs


def test_ctrl_c_stops_the_web_server_and_the_worker(first_hour):
    assert first_hour.left_running == []
    assert first_hour.stopped_after < 30
    assert "web.1 stopped" in first_hour.output and "worker.1 stopped" in first_hour.output
    assert not answers(f"http://127.0.0.1:{first_hour.port}/livez")


def test_every_flask_command_the_readme_shows_works_as_written(first_hour):
    shown = command_lines((PROJECT_DIR / "README.md").read_text())
    assert len(shown) >= 4  # the simulated call and the three ways to make the first admin
    assert sorted(
        ran.command.replace(f"localhost:{first_hour.port}", "localhost:5000") for ran in first_hour.readme
    ) == (sorted(shown))
    for ran in first_hour.readme:
        assert ran.worked(), ran
    assert "Made admin account you@example.org." in "".join(ran.stdout + ran.stderr for ran in first_hour.readme)


def test_every_flask_command_the_readme_names_in_its_text_exists(runner):
    named = re.findall(r"`flask ([^`]*)`", (PROJECT_DIR / "README.md").read_text())
    commands = set()
    for words in named:
        command = []
        for word in words.replace("--app app", "").split():
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break  # a placeholder (NAME), an option or an alternative follows
            command.append(word)
        commands.add(tuple(command))
    assert ("tokens", "create") in commands and ("worker", "run") in commands
    for command in sorted(commands):
        result = runner.invoke(args=[*command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (command, result.output)


def test_the_readme_mentions_nothing_outside_the_repository():
    for path in [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("**/*.md"))]:
        assert "../shared" not in path.read_text(), path


# --- production: a missing secret is one line on stderr, exit status 1 --------------------------


def procfile() -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (PROJECT_DIR / "Procfile").read_text().splitlines() if line.strip())


@pytest.mark.parametrize("process", ["release", "web", "worker"])
def test_production_without_a_secret_refuses_in_one_line(process, tmp_path):
    folder = copy_project(tmp_path / "comment-line")
    done = subprocess.run(
        ["bash", "-c", procfile()[process]],
        cwd=folder,
        env=newcomer_env(SECRET_KEY="", TWILIO_ACCOUNT_SID="AC" + "1" * 32, TWILIO_AUTH_TOKEN="t"),  # no APP_ENV
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "SECRET_KEY is not set: production needs SECRET_KEY" in done.stderr
    assert done.stdout == ""


# --- the Debian packages the tests need ----------------------------------------------------------


def fake_commands(folder: Path, uid: int, installed: set[str]) -> Path:
    """Stand-ins for id, dpkg-query and apt-get that report `uid` and `installed`, and write
    each apt-get call to apt.log."""
    folder.mkdir()
    scripts = {
        "id": f"echo {uid}",
        "dpkg-query": f'for p in {" ".join(sorted(installed)) or "none"}; do [ "$p" = "${{@: -1}}" ] && '
        f'printf "install ok installed" && exit 0; done; exit 1',
        "apt-get": f'echo "$@" >> {folder}/apt.log',
    }
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    return folder


def system_packages(tmp_path: Path, uid: int, installed: set[str]) -> tuple[subprocess.CompletedProcess, str]:
    fakes = fake_commands(tmp_path / "bin", uid, installed)
    done = subprocess.run(
        ["make", "--no-print-directory", "system-packages"],
        cwd=PROJECT_DIR,
        env={"PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = fakes / "apt.log"
    return done, log.read_text() if log.exists() else ""


def test_make_test_installs_the_missing_debian_packages_as_root(tmp_path):
    done, apt = system_packages(tmp_path, 0, {"chromium", "sox"})
    assert done.returncode == 0, done
    assert apt.splitlines() == ["update -q", "install -y -q -o DPkg::Lock::Timeout=300 espeak-ng libsox-fmt-mp3"]


def test_make_test_installs_nothing_when_the_debian_packages_are_there(tmp_path):
    done, apt = system_packages(tmp_path, 0, {"chromium", "espeak-ng", "sox", "libsox-fmt-mp3"})
    assert (done.returncode, done.stdout, done.stderr, apt) == (0, "", "", "")


def test_make_test_names_the_missing_debian_packages_when_not_root(tmp_path):
    done, apt = system_packages(tmp_path, 1000, {"espeak-ng", "sox", "libsox-fmt-mp3"})
    assert done.returncode == 0 and apt == ""
    assert "not installed: chromium." in done.stderr and "sudo apt-get install -y chromium" in done.stderr


def test_make_test_and_ci_install_the_debian_packages_the_same_way():
    makefile = (PROJECT_DIR / "Makefile").read_text()
    assert re.search(r"^test: system-packages ", makefile, re.M)
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci and "redis" not in ci.lower()
