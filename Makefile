# Two commands on a fresh Debian 12 machine: `make setup` then `make test`.
CARGO ?= cargo
RUNTIME_BIN ?= $(CURDIR)/target/release/runtime
export RUNTIME_BIN

.PHONY: all build setup test unit integration examples bench lint fmt clean

all: build

build:
	$(CARGO) build --release --bin runtime

setup:
	./scripts/setup.sh

examples: build
	./bundle-examples/build-all.sh

# Unit tests, then the black-box integration tests against $(RUNTIME_BIN) (real containers, as root).
test: build examples
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) nextest run --workspace --no-fail-fast --test-threads 2

bench: build examples
	$(CARGO) run --release -p runtime-bench -- --runtime $(RUNTIME_BIN)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf bundle-examples/out
