# c2vm — container images to bootable VM bundles.
# `make demo` and `make test` do all set-up on a fresh Debian 12 machine (run as root, or with sudo
# available for apt-get).

SHELL      := /bin/bash
GO         ?= go
BIN        := $(CURDIR)/bin
BUILD      := $(CURDIR)/build
CACHE      ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/c2vm
KERNEL_DIR := $(CACHE)/kernel
HOST_ARCH  := $(shell $(GO) env GOARCH 2>/dev/null || dpkg --print-architecture)
# Guest architectures this c2vm carries an init and runc for (the host's and the cross-built ones).
GUEST_ARCHES ?= amd64 arm64
CROSS_ARCHES := $(filter-out $(HOST_ARCH),$(GUEST_ARCHES))
TRIPLET_amd64 := x86_64-linux-gnu
TRIPLET_arm64 := aarch64-linux-gnu
# A cross C compiler, its libc and libseccomp of the target architecture (multiarch) per cross arch.
CROSS_PKGS := $(foreach a,$(CROSS_ARCHES),gcc-$(subst _,-,$(TRIPLET_$(a))) libc6-dev-$(a)-cross libseccomp-dev:$(a))
cc = $(if $(filter $(1),$(HOST_ARCH)),gcc,$(TRIPLET_$(1))-gcc)
FUZZTIME   ?= 30s
FUZZMIN    ?= 5s
BUILD_PKGS := gcc libc6-dev pkg-config libseccomp-dev zstd $(CROSS_PKGS)
DEB_PKGS   := $(BUILD_PKGS) qemu-system-x86 qemu-system-common qemu-system-arm squashfs-tools erofs-utils e2fsprogs busybox-static qemu-user-static
DEBS_DIR   := $(CACHE)/debs
FOREIGN    := arm64 s390x armhf ppc64el
SUDO       := $(if $(filter 0,$(shell id -u)),,sudo)
ASSETS     := initgen/assets/files
RUNC_VER   := $(shell $(GO) list -m -f '{{.Version}}' github.com/opencontainers/runc 2>/dev/null)
# runc's build tags: seccomp linked in; no CRIU (c2vm never checkpoints; 0.7 MB less in every initrd).
RUNC_TAGS  := seccomp netgo osusergo runc_nocriu
RUNC_STAMP := .runc-$(RUNC_VER)-$(shell echo $(RUNC_TAGS) | tr ' ' _)

export C2VM_LIBDIR := $(BIN)

# ADD_ARCH (in a shell loop over $$a) lets dpkg install packages of architecture $$a (multiarch).
ADD_ARCH = dpkg --print-architecture | grep -qx $$a || dpkg --print-foreign-architectures | grep -qx $$a || $(SUDO) dpkg --add-architecture $$a

PARITY_PKGS := docker.io mmdebstrap postgresql-client mariadb-client redis-tools apache2-utils curl
TEST_PKGS   := docker-registry apache2-utils skopeo openssl

.PHONY: help deps deps-build kernel kernel-c2vm kernel-c2vm-src foreign build build-only runc init guest example demo test test-deps test-go test-unit-all test-vm test-registry test-vm-c2vm test-parity test-unit lint fuzz bench bench-go clean

help: ## show this help
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## install the Debian packages c2vm needs (only the missing ones)
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  for a in $$(echo "$$missing" | tr ' ' '\n' | sed -n 's/.*://p' | sort -u); do \
	    $(ADD_ARCH); \
	  done; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

deps-build: ## install only what building c2vm needs (gcc, libseccomp-dev, the cross compilers)
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BUILD_PKGS)"

kernel: deps ## fetch the reference kernel package per guest arch into ~/.cache/c2vm/kernel (XDG_CACHE_HOME), once
	@for a in $(GUEST_ARCHES); do \
	  ls $(KERNEL_DIR)/linux-image-[0-9]*_$$a.deb >/dev/null 2>&1 && continue; \
	  $(ADD_ARCH); \
	  mkdir -p $(KERNEL_DIR) && cd $(KERNEL_DIR) && \
	  $(SUDO) apt-get update -qq && \
	  dep=$$(apt-cache depends linux-image-cloud-$$a:$$a | awk '/Depends: linux-image-[0-9]/{print $$2; exit}') && \
	  test -n "$$dep" && chmod 777 . && { apt-get download $$dep 2>&1 | grep -v unsandboxed; true; }; \
	done
	@for a in $(GUEST_ARCHES); do ls $(KERNEL_DIR)/linux-image-[0-9]*_$$a.deb || { echo "make kernel: no $$a kernel package in $(KERNEL_DIR)" >&2; exit 1; }; done

# The c2vm kernel: Debian's linux-source-6.1 with kernel/config/common.config and
# <arch>.config merged over allnoconfig; everything built in, no modules. Per VM arch (the other
# one cross-compiled with the same Debian cross toolchain as runc), cached in
# ~/.cache/c2vm/kernel-c2vm/<key>/ by the source package's version and the configs' hash;
# kernel-c2vm/<arch> points at the current one (replaced atomically; it takes back the link from a
# kernel `c2vm kernel pull` fetched).
KSRC_PKG    := linux-source-6.1
KCONFIG_DIR := kernel/config
KCACHE      := $(CACHE)/kernel-c2vm
KERNEL_BUILD_PKGS := gcc make bc flex bison libelf-dev libssl-dev xz-utils zstd $(CROSS_PKGS)
C2VM_KERNEL_ARCHES ?= $(GUEST_ARCHES)
KARCH_amd64  := x86
KARCH_arm64  := arm64
KCONFIG_amd64 := x86_64
KCONFIG_arm64 := arm64
KIMAGE_amd64 := bzImage
KIMAGE_arm64 := Image.gz

kernel-c2vm: $(addprefix kernel-c2vm-,$(C2VM_KERNEL_ARCHES)) ## build the c2vm kernel per VM arch from Debian's linux-source-6.1, once per source version + config (~8-10 min each on 2 cores)

kernel-c2vm-src:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(KERNEL_BUILD_PKGS)"
	@mkdir -p $(DEBS_DIR) && chmod 777 $(DEBS_DIR); \
	if ! ls $(DEBS_DIR)/$(KSRC_PKG)_*_all.deb >/dev/null 2>&1; then \
	  $(SUDO) apt-get update -qq && cd $(DEBS_DIR) && apt-get download $(KSRC_PKG) 2>&1 | grep -v unsandboxed; \
	fi

kernel-c2vm-%: kernel-c2vm-src
	$(if $(KARCH_$*),,$(error kernel-c2vm-$*: no c2vm kernel config for $* (there are: amd64 arm64)))
	@frags="$(CURDIR)/$(KCONFIG_DIR)/common.config $(CURDIR)/$(KCONFIG_DIR)/$(KCONFIG_$*).config"; \
	deb=$$(ls $(DEBS_DIR)/$(KSRC_PKG)_*_all.deb | sort -V | tail -1); \
	key=$$(cat $$frags | sha256sum | cut -c1-12)-$$(basename $$deb _all.deb | sed 's/.*_//'); \
	out=$(KCACHE)/$$key; \
	kmake="$(MAKE) -s -C $(KCACHE)/build-$$key ARCH=$(KARCH_$*) $(if $(filter $*,$(HOST_ARCH)),,CROSS_COMPILE=$(TRIPLET_$*)-)"; \
	if [ ! -d $$out ]; then \
	  src=$(KCACHE)/build-$$key; rm -rf $$src && mkdir -p $$src && \
	  echo "building the c2vm kernel for $* ($$key) in $$src" && \
	  dpkg-deb --fsys-tarfile $$deb | tar -xO ./usr/src/$(KSRC_PKG).tar.xz | tar -xJ -C $$src --strip-components=1 && \
	  $$kmake allnoconfig >/dev/null && \
	  (cd $$src && ARCH=$(KARCH_$*) ./scripts/kconfig/merge_config.sh -m .config $$frags >/dev/null 2>&1) && \
	  $$kmake olddefconfig && \
	  for f in $$frags; do $(CURDIR)/$(KCONFIG_DIR)/check.sh $$f $$src/.config || exit 1; done && \
	  KBUILD_BUILD_TIMESTAMP=2023-06-10 KBUILD_BUILD_USER=c2vm KBUILD_BUILD_HOST=c2vm KBUILD_BUILD_VERSION=1 \
	    $$kmake -j$$(nproc) $(KIMAGE_$*) && \
	  ver=$$($$kmake kernelrelease) && \
	  mkdir -p $$out.tmp/boot $$out.tmp/lib/modules/$$ver && \
	  cp $$src/arch/$(KARCH_$*)/boot/$(KIMAGE_$*) $$out.tmp/boot/vmlinuz-$$ver && \
	  cp $$src/vmlinux $$out.tmp/boot/vmlinux-$$ver && \
	  cp $$src/.config $$out.tmp/boot/config-$$ver && \
	  cp $$src/modules.builtin $$out.tmp/lib/modules/$$ver/modules.builtin && \
	  mv $$out.tmp $$out && rm -rf $$src || exit 1; \
	fi; \
	ln -sfn $$key $(KCACHE)/.$*.link && mv -T $(KCACHE)/.$*.link $(KCACHE)/$* && ls -l $$out/boot/

# Emulators of Debian's qemu-user-static:<vm arch> that a VM of a non-host architecture carries for
# foreign images (only these, ~63 MB of the package's 370).
EMULATORS := x86_64 i386 aarch64 arm s390x ppc64le riscv64

foreign: deps ## fetch busybox-static per foreign arch (test images) and qemu-user-static per cross VM arch into ~/.cache/c2vm, once
	@for a in $(FOREIGN) $(CROSS_ARCHES); do \
	  $(ADD_ARCH); \
	done; \
	need() { ls $(DEBS_DIR)/$$1_*_$$2.deb >/dev/null 2>&1 || echo $$1:$$2; }; \
	pkgs="$$(for a in $(FOREIGN); do need busybox-static $$a; done; for a in $(CROSS_ARCHES); do need qemu-user-static $$a; done)"; \
	if [ -n "$$pkgs" ]; then \
	  $(SUDO) apt-get update -qq && mkdir -p $(DEBS_DIR) && chmod 777 $(DEBS_DIR) && cd $(DEBS_DIR) && \
	  for p in $$pkgs; do apt-get download $$p 2>&1 | grep -v unsandboxed; done; \
	fi; \
	for a in $(CROSS_ARCHES); do \
	  dir=$(CACHE)/emulators/$$a; [ -d $$dir ] && continue; \
	  rm -rf $$dir.tmp && mkdir -p $$dir.tmp && \
	  dpkg-deb --fsys-tarfile $$(ls $(DEBS_DIR)/qemu-user-static_*_$$a.deb | tail -1) | \
	    tar -x -C $$dir.tmp $(foreach e,$(EMULATORS),./usr/bin/qemu-$(e)-static) && \
	  rm -f $$dir.tmp/usr/bin/qemu-$$(case $$a in amd64) echo x86_64;; arm64) echo aarch64;; esac)-static && \
	  rm -rf $$dir && mv $$dir.tmp $$dir || exit 1; \
	done
	@ls -d $(DEBS_DIR)/busybox-static_*.deb $(addprefix $(CACHE)/emulators/,$(CROSS_ARCHES))

# Per guest arch, rebuilt only when the runc version pinned in go.mod (or the tags) change (~60 s cold on 2
# cores for the host's, ~30 s more per cross arch); libseccomp of the target arch is linked in.
$(BIN)/%/$(RUNC_STAMP): | deps-build
	@mkdir -p $(BIN)/$*
	CGO_ENABLED=1 GOARCH=$* CC=$(call cc,$*) PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR=/usr/lib/$(TRIPLET_$*)/pkgconfig \
	  $(GO) build -trimpath -tags "$(RUNC_TAGS)" \
	  -ldflags "-s -w -extldflags -static -X main.version=$(RUNC_VER)" -o $(BIN)/$*/runc github.com/opencontainers/runc
	@rm -f $(BIN)/$*/.runc-* && touch $@

runc: $(foreach a,$(GUEST_ARCHES),$(BIN)/$(a)/$(RUNC_STAMP)) ## build the static runc with seccomp per guest arch (cached in bin/<arch>/)

init: ## build the guest init per guest arch (static, no cgo)
	@for a in $(GUEST_ARCHES); do \
	  mkdir -p $(BIN)/$$a && CGO_ENABLED=0 GOARCH=$$a $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/$$a/c2vm-init ./guestinit/cmd/c2vm-init || exit 1; \
	done

build: deps build-only ## install what is missing, then build c2vm with the guest init and runc embedded (bin/c2vm)

# The guest archive every initrd starts with (/init, /sbin/runc): written once per guest arch and
# compressed as hard as the kernel's initramfs decompressor allows (zstd -19 with an 8 MiB window,
# which the smallest guests have room for): 3.8 MB where the Go encoder reaches 4.3.
GUEST_ZSTD := zstd -19 --zstd=wlog=23 -T1 -q

# Rewritten only when the init's or runc's bytes change (go build touches them every time; the
# archive is touched too, so that it is never older than they are).
guest: runc init ## write the guest archive per guest arch (bin/<arch>/guest.cpio.zst)
	@for a in $(GUEST_ARCHES); do \
	  d=$(BIN)/$$a; key=$$(cat $$d/c2vm-init $$d/runc | sha256sum | cut -c1-16); \
	  if [ -f $$d/guest.cpio.zst ] && [ "$$(cat $$d/.guest-key 2>/dev/null)" = $$key ]; then touch $$d/guest.cpio.zst; continue; fi; \
	  $(GO) run ./initgen/cmd/mkguest $$d > $$d/guest.cpio && \
	  $(GUEST_ZSTD) -c < $$d/guest.cpio > $$d/guest.cpio.zst.tmp && \
	  rm $$d/guest.cpio && mv $$d/guest.cpio.zst.tmp $$d/guest.cpio.zst && echo $$key > $$d/.guest-key || exit 1; \
	done

build-only: guest ## build bin/c2vm without checking Debian packages beyond the compilers and libseccomp-dev
	@for a in $(GUEST_ARCHES); do mkdir -p $(ASSETS)/$$a && rm -f $(ASSETS)/$$a/* && cp $(BIN)/$$a/guest.cpio.zst $(ASSETS)/$$a/ || exit 1; done
	$(GO) build -trimpath -tags c2vm_embed -o $(BIN)/c2vm ./cmd/c2vm

example: build ## make the example image (OCI layout, offline) in build/hello-oci
	$(GO) run ./examples/mkimage -o $(BUILD)/hello-oci

demo: deps kernel example ## convert the example image into a bundle and boot it
	$(BIN)/c2vm convert -o $(BUILD)/hello.bundle oci:$(BUILD)/hello-oci:hello
	$(BIN)/c2vm inspect $(BUILD)/hello.bundle
	time $(BIN)/c2vm run --timeout 120s $(BUILD)/hello.bundle

# make test runs the tiers one after another and ends with each one's wall time (also when one
# fails), so CI's cost is visible per tier; build/tiers.txt keeps the table.
TIERS := $(BUILD)/tiers.txt
# timed NAME, COMMAND: run COMMAND, append NAME and its wall time (and FAILED) to $(TIERS).
timed = start=$$(date +%s); $(2); rc=$$?; \
	printf '%-44s %5ss%s\n' '$(1)' $$(( $$(date +%s) - start )) "$$([ $$rc = 0 ] || echo '  FAILED')" >> $(TIERS); \
	[ $$rc = 0 ] || { echo; echo "tier wall times:"; cat $(TIERS); exit $$rc; }
M := $(MAKE) --no-print-directory

test: ## the full test suite: lint, unit, fuzz seeds, VM and registry tests, docker parity; ends with each tier's wall time
	@mkdir -p $(BUILD) && : > $(TIERS)
	@$(call timed,lint (gofmt vet tidy staticcheck),$(M) lint)
	@$(call timed,setup (packages kernels runc init build),$(M) deps kernel foreign build test-deps)
	@$(call timed,c2vm kernel builds (amd64 arm64),$(M) kernel-c2vm)
	@$(call timed,unit + fuzz seeds + real-part tests,$(M) test-unit-all)
	@$(call timed,VM tests (Debian kernel),$(M) test-vm)
	@$(call timed,registry tests (docker-registry),$(M) test-registry)
	@$(call timed,VM tests (c2vm kernel),$(M) test-vm-c2vm)
	@$(call timed,docker parity + services,$(M) test-parity)
	@echo; echo "tier wall times:"; cat $(TIERS)

# The VM tests that also run on the c2vm kernel (the rest check Debian-kernel specifics: its
# modules, foreign-arch kernels).
C2VM_KERNEL_TESTS := TestVM(RunFormats|ExitStatus|ExitContract|Publish|Volumes|HostDirs|HostDirsKilled|Stop|StopSignal|Terminal|Stdin|ExportRunners|Faults|MemorySmall)$$
# Test names: TestVM* boot QEMU, TestRegistry* use a real docker-registry, TestParity* a docker engine;
# everything else is the unit tier (with the real-part tests: real kernel package, sqfstar, ...).
TIERED := ^Test(VM|Registry|Parity)

test-deps:
	@$(M) deps DEB_PKGS="$(TEST_PKGS)"

test-go: deps kernel kernel-c2vm foreign build test-deps ## unit tests, fuzz seeds, VM tests (QEMU) on both kernels, registry tests (docker-registry)
	@$(M) test-unit-all test-vm test-registry test-vm-c2vm

test-unit-all:
	$(GO) test -count=1 -timeout 20m -skip '$(TIERED)' ./...
	$(GO) test -count=1 -tags c2vm_embed ./initgen/assets

# -v, filtered to the result lines: each test's wall time shows in CI's log.
VFILTER := grep -E '^(--- |    --- |PASS|FAIL|ok|panic|\s+\S+_test\.go:)'

test-vm:
	$(GO) test -count=1 -timeout 40m -run '^TestVM' -v ./... | $(VFILTER); exit $${PIPESTATUS[0]}

test-registry:
	$(GO) test -count=1 -timeout 20m -run '^TestRegistry' ./...

test-vm-c2vm:
	C2VM_KERNEL=c2vm $(GO) test -count=1 -timeout 30m -run '$(C2VM_KERNEL_TESTS)' -v ./cmd/c2vm | $(VFILTER); exit $${PIPESTATUS[0]}

test-parity: deps kernel build ## docker parity: real Dockerfiles, docker run vs c2vm run (starts its own dockerd)
	@$(M) deps DEB_PKGS="$(PARITY_PKGS)"
	C2VM_PARITY=1 $(GO) test -count=1 -timeout 40m -run '^TestParity' -v ./cmd/c2vm | grep -E '^(=== RUN|--- |\s+parity_test|PASS|FAIL|ok)' ; exit $${PIPESTATUS[0]}

test-unit: ## unit tests only (no VM), unprivileged
	$(GO) test -short ./...

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: ## gofmt, go vet, go mod tidy -diff, staticcheck (pinned) and the docs' links
	@$(M) deps DEB_PKGS="python3"
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	GOFLAGS= $(GO) run $(STATICCHECK) ./...
	python3 docs/check-links.py

# The agent contract's generated code (agent/*.pb.go) is committed; this regenerates it with Debian's
# protoc and the two plugins at the versions go.mod pins (protobuf, ttrpc).
.PHONY: proto
proto: ## regenerate agent/*.pb.go from agent/agent.proto
	@$(MAKE) --no-print-directory deps DEB_PKGS="protobuf-compiler"
	GOBIN=$(BIN)/proto GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$$($(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
	GOBIN=$(BIN)/proto GOFLAGS= $(GO) install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@$$($(GO) list -m -f '{{.Version}}' github.com/containerd/ttrpc)
	PATH=$(BIN)/proto:$$PATH protoc -I agent --go_out=agent --go_opt=paths=source_relative \
	  --go-ttrpc_out=agent --go-ttrpc_opt=paths=source_relative agent/agent.proto
	@# protoc-gen-go-ttrpc puts its header right above the package clause, where Go takes it for the
	@# package's doc; a blank line leaves agent/doc.go's comment the only one.
	sed -i 's#^// source: agent.proto$$#&\n#' agent/agent_ttrpc.pb.go

fuzz: ## run every fuzz target for FUZZTIME each (default 30s; FUZZMIN bounds minimizing new inputs)
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMIN) -timeout 0 $$pkg || exit 1; \
	  done; \
	done

bench: build kernel kernel-c2vm ## one table of figures as ratios (convert vs umoci+mksquashfs, boot per kernel vs the floor, smallest memory, sizes) into bench/results.md
	@$(MAKE) --no-print-directory deps DEB_PKGS="umoci mmdebstrap cpio time bc python3 squashfs-tools $(PARITY_PKGS)"
	bench/run.sh

bench-go: build ## Go benchmarks: conversion (vs umoci + mksquashfs), flatten, rootfs writers, initrd, layer decoding
	@$(MAKE) --no-print-directory deps DEB_PKGS="umoci"
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./...

clean: ## remove build outputs (keeps the kernel cache)
	rm -rf $(BIN) $(BUILD) $(addprefix $(ASSETS)/,$(GUEST_ARCHES))
