# The two commands the README names: `make run` starts the server, `make test` runs every check.
# Both do their own set-up (scripts/setup.sh is idempotent and quick once done).
# `make parity` (optional) compares nemo_lite with NeMo itself in its own .venv-nemo.
.PHONY: setup run test bench parity

ARGS ?=

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/stt-server $(ARGS)

test: setup
	bash scripts/test.sh

bench: setup
	bash scripts/bench.sh

parity:
	bash scripts/parity.sh $(ARGS)
