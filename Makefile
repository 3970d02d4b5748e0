# The two set-up commands of the README:
#   make run    install, migrate, load the line's script and serve it on http://localhost:5000
#   make test   install everything the tests need and run the whole suite
#   make bench  the benchmark of issue 5 on SQLite and PostgreSQL (docs/benchmark.md)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEV := APP_ENV=development

.PHONY: run test lint bench

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
	@echo
	$(DEV) $(BIN)/gunicorn --config config/gunicorn.py "app:create_app()"

test: $(VENV)/.installed-dev
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench run --db sqlite --db postgresql
