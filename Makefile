# mailtix — two commands matter: `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
CONFIG ?= mailtix.toml
# Byte-compiled modules make every `mailtix` process start several times faster;
# some environments forbid writing them, which costs the suite minutes.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-sqlite lint venv system-deps postgres bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@scripts/bootstrap-venv.sh $(VENV)
	@touch $@

## Start the daemon on the embedded default (SQLite, listener on 127.0.0.1:2525).
run: venv
	$(VENV)/bin/mailtix --config $(CONFIG) run

## The whole suite, on SQLite and on PostgreSQL, with real Dovecot and swaks.
test: venv system-deps postgres
	$(VENV)/bin/ruff check mailtix tests bench
	MAILTIX_TEST_PG_URL=$$(scripts/postgres.sh url) $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

## Only the SQLite half, no system packages (quick local loop).
test-sqlite: venv
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check mailtix tests bench

system-deps:
	@scripts/system-deps.sh

postgres: system-deps
	@scripts/postgres.sh start

bench: venv
	$(PY) bench/ingest.py

clean:
	rm -rf $(VENV) var build *.egg-info
