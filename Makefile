# pullgate — `make up` runs it, `make test` runs every test (installing what the
# tests need on a fresh machine), `make bench` measures it.

GO            ?= go
K8S_VERSION   := v1.37.2
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN           := $(CURDIR)/bin
# The embedded kube-apiserver reports the Kubernetes version it was built from, as a
# release build of kube-apiserver does.
LDFLAGS := -X pullgate.dev/pullgate/internal/platform/version.Version=$(VERSION) \
           -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
           -X k8s.io/component-base/version.gitMajor=1 \
           -X k8s.io/component-base/version.gitMinor=37 \
           -X k8s.io/component-base/version.gitTreeState=clean
UP_ARGS       ?=
TEST_TIMEOUT  ?= 60m
# A count, not a duration: duration-based -fuzztime trips a Go 1.26 coordinator race
# (golang/go#75804, "context deadline exceeded" with no crasher).
FUZZTIME      ?= 30000x

# Static binaries everywhere: the container image needs one, and one setting keeps one
# build cache for the binary, the tests and the image.
export CGO_ENABLED  := 0
export PULLGATE_BIN := $(BIN)/pullgate
export KUBECTL      := $(BIN)/kubectl

.PHONY: all build up test tools unit e2e fuzz vet tidy bench clean image gallery screenshots

all: build

# go build is incremental: these rules always run and relink only when needed.
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/pullgate ./cmd/pullgate
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kubectl k8s.io/kubernetes/cmd/kubectl
	$(GO) build -o $(BIN)/pullgate-credential-provider ./cmd/pullgate-credential-provider
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kubelet k8s.io/kubernetes/cmd/kubelet
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kube-proxy k8s.io/kubernetes/cmd/kube-proxy
	$(GO) build -ldflags "-s -w" -o $(BIN)/pullgate-pause ./cmd/pullgate-pause

## image: pullgate's container image, no Docker daemon needed: pushed to $(IMAGE)
## (e.g. make image IMAGE=registry.example.com/pullgate/pullgate:v1, credentials from
## the docker config), or written as an OCI layout to bin/image when IMAGE is empty.
IMAGE         ?=
image: build
	$(GO) run ./hack/image -binary $(BIN)/pullgate -version $(VERSION) $(if $(IMAGE),-push $(IMAGE),-oci-layout $(BIN)/image)

up: build
	$(BIN)/pullgate up $(UP_ARGS)

## test: everything — tools, go.mod tidy, vet, unit and end-to-end tests, fuzz targets.
## gotestsum is go test with, at the end, every skipped test and the reason it gave.
test: tools tidy build vet
	$(BIN)/gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg -- -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) fuzz

tools:
	@./hack/install-tools.sh

vet:
	$(GO) vet ./...

# go.mod must be what `go mod tidy` makes of it.
tidy:
	@$(GO) mod tidy -diff >/dev/null 2>&1 || { $(GO) mod tidy -diff; echo "go.mod is not tidy: run go mod tidy"; exit 1; }

unit:
	$(GO) test -count=1 ./internal/... ./pkg/...

e2e: build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./test/...

fuzz:
	@./hack/fuzz.sh $(FUZZTIME)

## bench: start-to-ready time, stop time and peak RSS of `pullgate up`, and the Go
## benchmarks of the library packages, each beside its goal or anchor.
bench: tools build
	@./hack/install-bench-tools.sh
	$(GO) run ./hack/benchup -bin $(BIN)/pullgate -runs 3
	$(GO) run ./hack/benchregistry
	$(GO) run ./hack/benchsecurity
	$(GO) run ./hack/benchpull
	$(GO) run ./hack/benchcontrollers
	$(GO) run ./hack/benchreplicas
	$(GO) run ./hack/benchrealnode
	$(GO) run ./hack/benchprune
	$(GO) run ./hack/benchplugin -bin $(BIN)
	$(GO) run ./hack/benchexplain
	$(GO) run ./hack/benchconsole
	$(GO) run ./hack/benchimages
	$(GO) run ./hack/benchpullthrough
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/... ./internal/...

## gallery: the README's explain gallery, from a real run of the explain e2e test.
gallery: build
	PULLGATE_EXPLAIN_GALLERY=$(CURDIR)/README.md $(GO) test -count=1 -run '^TestExplainPull$$' ./test/e2e

## screenshots: the README's console pictures, from a real run of the browser test.
screenshots: build
	PULLGATE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestConsoleWalksTheSeed$$' ./test/console

clean:
	rm -rf $(BIN)
