# umlvm: the two commands are `make run` and `make test` (see README.md).
# Every target sets up what it needs on a fresh Debian machine, idempotently.

CARGO       ?= cargo
GUEST_TARGET = x86_64-unknown-none
GUEST_DIR    = guest-kernel
# Debian packages the tests use as judges and guest userland (installed when missing);
# busybox-static and cpio build the test initramfs (tests/src/lib.rs: busybox_initramfs);
# e2fsprogs (mke2fs -d, debugfs, e2fsck) is what `umlvm mkrootfs` and the ext2 tests run.
DEB_PACKAGES = util-linux uml-utilities xvfb xterm xdotool busybox-static cpio e2fsprogs

.PHONY: all run test bench setup setup-rust setup-debian build build-release check-kvm fmt clippy lint clean

all: build

## setup: the Rust guest target and the Debian packages the tests need.
setup: setup-rust setup-debian

setup-rust:
	@rustup target list --installed 2>/dev/null | grep -qx '$(GUEST_TARGET)' \
	  || rustup target add $(GUEST_TARGET)

setup-debian:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

build: setup-rust
	$(CARGO) build -p umlvm

build-release: setup-rust
	$(CARGO) build --release -p umlvm

check-kvm:
	@test -e /dev/kvm || { echo "error: /dev/kvm is missing: umlvm needs KVM (hardware VMX/SVM or kvm_pvm)" >&2; exit 1; }
	@if [ -d /sys/module/kvm_pvm ]; then echo "host KVM: kvm_pvm (PVM)"; else echo "host KVM: hardware virtualisation"; fi

## run: build everything, make the demo root_fs (busybox, ext2) once, and boot it to the
## login prompt (root/root). `halt` in the guest ends it.
ROOT_FS ?= root_fs
run: build-release check-kvm setup-debian
	@test -e $(ROOT_FS) || ./target/release/umlvm mkrootfs $(ROOT_FS) --size 256M
	./target/release/umlvm run --rootfs $(ROOT_FS)

## test: everything CI checks (unit tests, guest-logic tests on the host, end-to-end boots).
test: setup build check-kvm
	$(CARGO) test --workspace
	cd $(GUEST_DIR) && $(CARGO) test -p umlvm-kcore

## bench: boot-time, wall-time and memory figures (docs/benchmarks.md).
bench: setup build-release check-kvm
	$(CARGO) run --release -p umlvm-benches -- --umlvm ./target/release/umlvm

fmt:
	$(CARGO) fmt --all
	cd $(GUEST_DIR) && $(CARGO) fmt --all

## lint: formatting and clippy, both workspaces, warnings are errors.
lint: setup-rust
	$(CARGO) fmt --all -- --check
	cd $(GUEST_DIR) && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd $(GUEST_DIR) && $(CARGO) clippy -p umlvm-kcore --all-targets -- -D warnings
	cd $(GUEST_DIR) && $(CARGO) clippy -p umlvm-kernel --target $(GUEST_TARGET) -- -D warnings

clean:
	$(CARGO) clean
	cd $(GUEST_DIR) && $(CARGO) clean
