# execguard build, test and demo entry points. See README.md.
GO        ?= go
BIN       := bin
CACHE     ?= /var/cache/execguard
TOOLS     := $(CACHE)/tools
STATICCHECK_VERSION := v0.8.2
PREFIX    ?= /usr/local
GOFLAGS   ?= -buildvcs=false
export GOFLAGS

.PHONY: deps all build test lint e2e demo bench-e2e bench install clean fuzz image chart-lint

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/nri-execguard ./plugin/cmd/nri-execguard
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/containerd-shim-execguard-v2 ./stub/cmd/containerd-shim-execguard-v2

# What the tests and the demo need on this machine (root): runc and
# busybox-static from apt, containerd/ctr/crictl built from the Go module
# proxy into $(CACHE), the test image. Cached; fast when done.
deps:
	bash test/e2e/setup.sh

# Every test that needs no root.
test:
	$(GO) test -count=1 ./...

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(TOOLS)/staticcheck
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/...
	$(TOOLS)/staticcheck ./...

# End to end on a real containerd (root): installs and caches what it needs.
e2e: build
	bash test/e2e/setup.sh
	$(GO) test -tags e2e -count=1 -timeout 40m -v ./test/e2e/...

demo: build
	bash test/e2e/setup.sh
	$(GO) run -tags e2e ./test/demo

bench-e2e: build
	bash test/e2e/setup.sh
	$(GO) test -tags e2e -count=1 -run '^$$' -bench 'BenchmarkExecLatency|BenchmarkPodLifecycle|BenchmarkSessionThroughput' -benchtime 1x -v ./test/e2e/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Fuzzes the config loader (FuzzLoad: never panics, what it accepts
# compiles and round-trips) and the policy engine (FuzzDecide), each for
# FUZZTIME, from their seed corpora (FuzzLoad's: the README's and the
# deployed configs). A failing input is saved under testdata/fuzz/.
FUZZTIME  ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./conf/
	$(GO) test -run '^$$' -fuzz '^FuzzDecide$$' -fuzztime $(FUZZTIME) ./execpolicy/

# Installs under $(DESTDIR): nri-execguard and containerd-shim-execguard-v2
# in $(PREFIX)/bin, each copied to a temporary name in that directory and
# renamed over the old file (mv -f within one directory is a rename), so
# that containerd starting a shim, or a running plugin, never sees a
# truncated binary; the pre-registered NRI plugin
# /opt/nri/plugins/10-execguard (a link, so that upgrading the binary
# upgrades the plugin); its config /etc/nri/conf.d/10-execguard.conf unless
# one exists; the root-only state dir. containerd's drop-in
# (conf/deploy/containerd-execguard.toml) is left to the operator: it
# switches every CRI pod to containerd-shim-execguard-v2.
install: build
	install -d -m 0755 $(DESTDIR)$(PREFIX)/bin
	for b in nri-execguard containerd-shim-execguard-v2; do \
		install -m 0755 $(BIN)/$$b $(DESTDIR)$(PREFIX)/bin/.$$b.new && \
		mv -f $(DESTDIR)$(PREFIX)/bin/.$$b.new $(DESTDIR)$(PREFIX)/bin/$$b || exit 1; \
	done
	install -d -m 0755 $(DESTDIR)/opt/nri/plugins $(DESTDIR)/etc/nri/conf.d
	ln -sfn $(PREFIX)/bin/nri-execguard $(DESTDIR)/opt/nri/plugins/10-execguard
	test -e $(DESTDIR)/etc/nri/conf.d/10-execguard.conf || install -m 0644 conf/deploy/config.toml $(DESTDIR)/etc/nri/conf.d/10-execguard.conf
	install -d -m 0700 $(DESTDIR)/var/lib/execguard

# The nri-execguard image (both binaries, static): an OCI image layout tar
# for `ctr -n k8s.io images import` (it also carries docker's manifest.json,
# for `docker load`), built without a registry or a daemon. Reproducible:
# the same binaries, VERSION and REVISION give the same digest (printed, and
# written to $(IMAGE_TAR).digest). conf/deploy/Containerfile builds the
# same content with other tools.
IMAGE     ?= ghcr.io/execguard/nri-execguard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
IMAGE_TAR ?= $(BIN)/nri-execguard-image.tar
image: build
	$(GO) run ./internal/ociimage/mkimage -bin $(BIN) -ref $(IMAGE):$(VERSION) \
		-version $(VERSION) -revision '$(REVISION)' -arch $$($(GO) env GOARCH) -o $(IMAGE_TAR)

# The Helm chart: helm (built from the Go module proxy into $(TOOLS), a few
# minutes the first time) lints it and renders it with every optional part on.
HELM_VERSION := v3.19.0
CHART := conf/deploy/helm/nri-execguard
$(TOOLS)/helm:
	cd / && GOBIN=$(TOOLS) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

chart-lint: $(TOOLS)/helm
	$(TOOLS)/helm lint --strict $(CHART)
	$(TOOLS)/helm template t $(CHART) -n kube-system >/dev/null
	$(TOOLS)/helm template t $(CHART) -n kube-system --set metrics.serviceMonitor.enabled=true \
		--set installer.restartContainerd=true --set installer.editContainerdConfig=true \
		--set runtimeClass.create=true --set-string installer.containerdDropIn='version = 3' >/dev/null
	$(TOOLS)/helm template t $(CHART) -n kube-system --set installer.enabled=false >/dev/null

clean:
	rm -rf $(BIN)
