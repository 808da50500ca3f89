# One command to set up and run each main job on a fresh clone (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maple-installed
# Every compiled module and its declarations: a new .pyx is rebuilt without editing this line.
SOURCES := pyproject.toml setup.py bench/pgo.py engine/ir/opcodes.py proto/maple/v1/*.proto \
	$(wildcard engine/*.pxd engine/*/*.pyx engine/*/*.pxd)

.PHONY: serve test bench check clean

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	# the compiled modules rebuilt laid out by a profile of the reference pack's Decides and an event month (~1 min)
	$(BIN)/python -m bench.pgo
	touch $(STAMP)

STORE ?= sqlite://.maple/profiles.db

## serve: build, load the sample customers' events, serve the reference rule pack
##        (gRPC :50051, admin :50052, metrics :9464; profiles in .maple/profiles.db)
serve: $(STAMP)
	$(BIN)/maple profile import rules/data/sample_events.jsonl --store $(STORE) --rebase --data rules/data
	$(BIN)/maple serve --rules rules/ --store $(STORE) --metrics-port 9464

## test: build and run every test
test: $(STAMP)
	bash .ci/ensure-redis
	$(BIN)/python -m pytest -q

## bench: in-process evaluation figures (see bench/README.md)
bench: $(STAMP)
	$(BIN)/python bench/eval_bench.py

check: $(STAMP)
	$(BIN)/maple check rules/

clean:
	rm -rf $(VENV) build *.egg-info engine/eval/_opcodes.pxi engine/server/pb \
		$(patsubst %.pyx,%.c,$(wildcard engine/*/*.pyx)) $(wildcard engine/*/*.so)
