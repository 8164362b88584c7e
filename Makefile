# Two commands on a fresh Debian 12 machine: `make setup` then `make test`.
CARGO ?= cargo
# The runtime is linked statically (glibc, libseccomp): it is exec'd twice per create/run/exec
# (see runtime/src/exe_seal.rs), and skipping the dynamic loader saves ~0.8 ms each time.
# An explicit --target keeps the static flags away from build scripts and proc macros; the
# result is copied to target/release/runtime, where tests, bench and scripts look by default.
HOST_TARGET := $(shell rustc -vV | sed -n 's/^host: //p')
RUNTIME_BIN ?= $(CURDIR)/target/release/runtime
export RUNTIME_BIN

.PHONY: all build setup test unit integration integration-engines integration-migration examples bench lint fmt clean

all: build

build:
	LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/$$(gcc -print-multiarch) \
	RUSTFLAGS="-C target-feature=+crt-static" \
	$(CARGO) build --release --bin runtime --target $(HOST_TARGET)
	install -D -m 0755 target/$(HOST_TARGET)/release/runtime target/release/runtime

setup:
	./scripts/setup.sh

examples: build
	./bundle-examples/build-all.sh

# Unit tests, then the black-box integration tests against $(RUNTIME_BIN) (real containers, as root),
# then the end-to-end scripts under integration/.
test: build examples
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) nextest run --workspace --no-fail-fast --test-threads 2
	$(MAKE) integration

# Every integration/*/run.sh (engines: podman and containerd with runc and with $(RUNTIME_BIN)).
integration: build
	@set -e; for s in integration/*/run.sh; do echo "== $$s"; "$$s"; done

integration-engines: build
	./integration/engines/run.sh

# Live migration on a two-host bed of network namespaces (integration/migration/README.md): runc,
# $(RUNTIME_BIN) by hand, and $(RUNTIME_BIN) migrate. `integration` runs it too (its run.sh).
integration-migration: build
	./integration/migration/run.sh

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
