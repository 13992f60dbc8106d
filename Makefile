# c2vm — container images to bootable VM bundles.
# `make demo` and `make test` do all set-up on a fresh Debian 12 machine (run as root, or with sudo
# available for apt-get).

SHELL      := /bin/bash
GO         ?= go
BIN        := $(CURDIR)/bin
BUILD      := $(CURDIR)/build
CACHE      ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/c2vm
KERNEL_DIR := $(CACHE)/kernel
KERNEL_PKG ?= linux-image-cloud-amd64
FUZZTIME   ?= 30s
FUZZMIN    ?= 5s
DEB_PKGS   := gcc libc6-dev pkg-config libseccomp-dev qemu-system-x86 squashfs-tools erofs-utils e2fsprogs busybox-static qemu-user-static
DEBS_DIR   := $(CACHE)/debs
FOREIGN    := arm64 s390x armhf ppc64el
SUDO       := $(if $(filter 0,$(shell id -u)),,sudo)
ASSETS     := initgen/assets/files
RUNC_VER   := $(shell $(GO) list -m -f '{{.Version}}' github.com/opencontainers/runc 2>/dev/null)

export C2VM_LIBDIR := $(BIN)

PARITY_PKGS := docker.io mmdebstrap
TEST_PKGS   := docker-registry apache2-utils skopeo openssl

.PHONY: help deps deps-build kernel foreign build build-only runc init example demo test test-go test-parity test-unit lint fuzz bench clean

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## install the Debian packages c2vm needs (only the missing ones)
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

deps-build: ## install only what building c2vm needs (gcc, libseccomp-dev)
	@$(MAKE) --no-print-directory deps DEB_PKGS="gcc libc6-dev pkg-config libseccomp-dev"

kernel: deps ## fetch the reference kernel package into ~/.cache/c2vm/kernel (XDG_CACHE_HOME), once
	@if ! ls $(KERNEL_DIR)/linux-image-[0-9]*.deb >/dev/null 2>&1; then \
	  mkdir -p $(KERNEL_DIR) && cd $(KERNEL_DIR) && \
	  $(SUDO) apt-get update -qq && \
	  dep=$$(apt-cache depends $(KERNEL_PKG) | awk '/Depends: linux-image-[0-9]/{print $$2; exit}') && \
	  test -n "$$dep" && chmod 777 . && apt-get download $$dep 2>&1 | grep -v unsandboxed; \
	fi
	@ls $(KERNEL_DIR)/linux-image-[0-9]*.deb

foreign: deps ## fetch busybox-static for foreign architectures (test images) into ~/.cache/c2vm/debs, once
	@for a in $(FOREIGN); do \
	  if ! ls $(DEBS_DIR)/busybox-static_*_$$a.deb >/dev/null 2>&1; then \
	    dpkg --print-foreign-architectures | grep -qx $$a || $(SUDO) dpkg --add-architecture $$a; \
	    need_update=1; \
	  fi; \
	done; \
	if [ -n "$$need_update" ]; then \
	  $(SUDO) apt-get update -qq && mkdir -p $(DEBS_DIR) && chmod 777 $(DEBS_DIR) && cd $(DEBS_DIR) && \
	  for a in $(FOREIGN); do apt-get download busybox-static:$$a 2>&1 | grep -v unsandboxed; done; \
	fi; true
	@ls $(DEBS_DIR)/busybox-static_*.deb

# Rebuilt only when the runc version pinned in go.mod changes (~60 s cold on 2 cores).
$(BIN)/.runc-$(RUNC_VER): | deps-build
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -trimpath -tags "seccomp netgo osusergo" \
	  -ldflags "-s -w -extldflags -static -X main.version=$(RUNC_VER)" -o $(BIN)/runc github.com/opencontainers/runc
	@rm -f $(BIN)/.runc-* && touch $@

runc: $(BIN)/.runc-$(RUNC_VER) ## build the static runc with seccomp (cached in bin/)

init: ## build the guest init (static, no cgo)
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/c2vm-init ./guestinit/cmd/c2vm-init

build: deps build-only ## install what is missing, then build c2vm with the guest init and runc embedded (bin/c2vm)

build-only: runc init ## build bin/c2vm without checking Debian packages beyond gcc and libseccomp-dev
	@mkdir -p $(ASSETS)
	cp $(BIN)/c2vm-init $(BIN)/runc $(ASSETS)/
	$(GO) build -trimpath -tags c2vm_embed -o $(BIN)/c2vm ./cmd/c2vm

example: build ## make the example image (OCI layout, offline) in build/hello-oci
	$(GO) run ./examples/mkimage -o $(BUILD)/hello-oci

demo: deps kernel example ## convert the example image into a bundle and boot it
	$(BIN)/c2vm convert -o $(BUILD)/hello.bundle oci:$(BUILD)/hello-oci:hello
	$(BIN)/c2vm inspect $(BUILD)/hello.bundle
	time $(BIN)/c2vm run --timeout 120s $(BUILD)/hello.bundle

test: lint test-go test-parity ## the full test suite: lint, unit, fuzz seeds, VM and registry tests, docker parity

test-go: deps kernel foreign build ## unit tests, fuzz seeds, VM tests (QEMU), registry tests (docker-registry)
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(TEST_PKGS)"
	$(GO) test -count=1 -timeout 60m ./...

test-parity: deps kernel build ## docker parity: real Dockerfiles, docker run vs c2vm run (starts its own dockerd)
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(PARITY_PKGS)"
	C2VM_PARITY=1 $(GO) test -count=1 -timeout 40m -run '^TestParity$$' -v ./cmd/c2vm | grep -E '^(=== RUN|--- |\s+parity_test|PASS|FAIL|ok)' ; exit $${PIPESTATUS[0]}

test-unit: ## unit tests only (no VM), unprivileged
	$(GO) test -short ./...

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: ## gofmt, go vet, go mod tidy -diff and staticcheck (pinned)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	GOFLAGS= $(GO) run $(STATICCHECK) ./...

fuzz: ## run every fuzz target for FUZZTIME each (default 30s; FUZZMIN bounds minimizing new inputs)
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) -timeout 0 $$pkg || exit 1; \
	  done; \
	done

bench: build ## benchmarks: conversion (vs umoci + mksquashfs), flatten, rootfs writers, initrd, layer decoding
	@dpkg-query -W -f='$${Status}\n' umoci 2>/dev/null | grep -q 'install ok installed' || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq umoci >/dev/null; }
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./...

clean: ## remove build outputs (keeps the kernel cache)
	rm -rf $(BIN) $(BUILD) $(ASSETS)/c2vm-init $(ASSETS)/runc
