# One command to set up and run each main job on a fresh clone (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maple-installed
SOURCES := pyproject.toml setup.py engine/eval/_kernel.pyx engine/eval/_kernel.pxd engine/eval/_geo.pxd engine/ir/opcodes.py engine/inventory/_nearby.pyx engine/server/_wire.pyx engine/service/_assemble.pyx engine/service/_decide.pyx engine/service/_fields.pxd engine/profiles/_fastpaths.pyx engine/profiles/_walbuf.pyx proto/maple/v1/*.proto

.PHONY: serve test bench check clean

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
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
	rm -rf $(VENV) build *.egg-info engine/eval/_kernel.c engine/server/_wire.c engine/service/_assemble.c engine/service/_decide.c engine/inventory/_nearby.c engine/profiles/_fastpaths.c engine/profiles/_walbuf.c engine/*/*.so engine/eval/_opcodes.pxi engine/server/pb
