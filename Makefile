# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run suites test lint typecheck pytest bench bench-full docs fuzz fuzz-campaign fuzz-report fuzz-soak clean

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

## Mutated S/MIME mail through every stage serve builds (fuzz/soak.py), for SOAK_TIME seconds.
SOAK_TIME ?= 600
fuzz-soak: $(STAMP)
	$(BIN)/python -m fuzz.soak --seconds $(SOAK_TIME)

## The benchmarks print their figures. `make bench` is the quick pass (BENCH_QUICK=1, the
## default: smaller counts, one round, a few minutes in all); `make bench-full` (or
## BENCH_QUICK=0) gives the full figures the docs quote, which take much longer.
BENCH_QUICK ?= 1
# Quick arguments per benchmark (the full run uses each script's own defaults).
QUICK_compile := --sizes 1000 10000 --repeat 2
QUICK_connections := --connections 500 --rounds 1
QUICK_evaluate := --messages 1000
QUICK_filter_stage := --messages 300
QUICK_gateway := --quick
QUICK_hostile := --scale 0.25
QUICK_hostlimits := --ops 20000 --messages 500 --rounds 1
QUICK_keystore := --count 20000 --backend sqlite
QUICK_lsp := --quick
QUICK_queue_cpu := --messages 300 --rounds 1
QUICK_robust := --lines 100000
QUICK_smime := --seconds 0.1 --openssl-runs 10
QUICK_structure := --repeat 1
QUICK_trace := --messages 300 --repeat 1
QUICK_NAMES := compile connections evaluate filter_stage gateway hostile hostlimits keystore lsp queue_cpu robust smime structure trace
PAREN := )
QUICK_CASE := case $$n in $(foreach q,$(QUICK_NAMES),$(q)$(PAREN) args="$(QUICK_$(q))";;) esac
bench: $(STAMP)
	@for b in bench/[!_]*.py; do n=$$(basename $$b .py); echo "== $$b"; args=""; \
	  if [ "$(BENCH_QUICK)" = 1 ]; then $(QUICK_CASE); fi; \
	  $(BIN)/python $$b $$args || exit 1; done

bench-full:
	@$(MAKE) --no-print-directory bench BENCH_QUICK=0

## Regenerate the generated documentation (tests check that the checked-in pages match).
docs: $(STAMP)
	$(BIN)/python -m runtime.config.reference --write
	$(BIN)/python -m filterlang._docgen

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
