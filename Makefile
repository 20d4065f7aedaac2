# make sweep  — the quick rewind grid (Fashion-MNIST, embedded local Ray); ARGS="..." adds flags
# make test   — lint + the test suite
PY := .venv/bin/python
ARGS ?=

.PHONY: setup sweep test lint bench
setup:
	@bash scripts/setup.sh

sweep: setup
	$(PY) sweeps/rewind_grid.py $(ARGS)

lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest $(ARGS)

bench: setup
	$(PY) benchmarks/train_throughput.py $(ARGS)
