# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run suites test lint typecheck pytest bench fuzz fuzz-campaign fuzz-report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## The main job: start the gateway on examples/gateway.toml in the foreground.
ORG_CERT := var/certs/org.crt.pem

# The example's organisation certificate, self-signed, created once.
$(ORG_CERT): | $(STAMP)
	mkdir -p var/certs
	$(BIN)/filterlang cert create --cn example.org --org "Example Org" --san-domain example.org --san-email postmaster@example.org --out var/certs/org

run: $(STAMP) $(ORG_CERT)
	@echo "filterlang gateway on 127.0.0.1:2525, delivering into var/maildir/ (Ctrl-C stops it)."
	@echo "Send it a test message from another terminal:"
	@echo "  swaks --server 127.0.0.1 --port 2525 --from alice@example.com --to bob@example.org --header 'Subject: hello' --body 'hi'"
	@echo "then look in var/maildir/bob@example.org/new/ (signed by the gateway) and var/tracking.jsonl."
	$(BIN)/filterlang serve -c examples/gateway.toml

## Run the example filters over the example messages (the example test suites).
suites: $(STAMP)
	$(BIN)/filterlang test --suite examples/suites/*.toml

## The whole suite: style, types, tests.
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check filterlang runtime smime tests bench fuzz

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

## Fuzz every harness in fuzz/ in turn (atheris where installed, else hypothesis), each for
## FUZZ_RUNS inputs or FUZZ_TIME seconds (0: no limit), whichever comes first. A crash, a hang
## over FUZZ_TIMEOUT seconds or a memory blow-up stops with its input in var/fuzz/TARGET/.
FUZZ_TARGETS ?= filters fmt message cms smime_mime smtp config keys
FUZZ_RUNS ?= 1000000
FUZZ_TIME ?= 0
FUZZ_TIMEOUT ?= 2
fuzz: $(STAMP)
	@for t in $(FUZZ_TARGETS); do \
		$(BIN)/python -m fuzz.run $$t --runs $(FUZZ_RUNS) --max-time $(FUZZ_TIME) \
			--timeout $(FUZZ_TIMEOUT) || exit 1; \
	done

## A long campaign toward 10^6 clean runs per target, in 10-minute slices, round robin, at the
## lowest priority; `make fuzz-report` prints the ledger (var/fuzz/ledger.jsonl).
fuzz-campaign: $(STAMP)
	nice -n 19 $(BIN)/python -m fuzz.campaign --slice 600

fuzz-report: $(STAMP)
	@$(BIN)/python -m fuzz.campaign --report

## The benchmarks print their figures; bench/gateway.py in its quick mode (BENCH_FULL=1: all).
bench: $(STAMP)
	@for b in bench/[!_]*.py; do echo "== $$b"; \
	  case $$b in bench/gateway.py) args="$(if $(BENCH_FULL),,--quick)";; *) args="";; esac; \
	  $(BIN)/python $$b $$args || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
