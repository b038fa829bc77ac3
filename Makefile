# Tidemark: the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
BIN := $(CURDIR)/.bin
TESSERA := github.com/transparency-dev/tessera
TESSERA_VERSION := v1.0.4
# versitygw: an S3-compatible server (Apache 2.0), for the S3 storage tests.
VERSITYGW := github.com/versity/versitygw/cmd/versitygw
VERSITYGW_VERSION := v1.8.0

.PHONY: run test tools build image fmt vet fuzz screenshots web-deps

# Run the log on the embedded default (POSIX storage in ./tidemark-data).
run:
	go run ./cmd/tidemark log --data ./tidemark-data

# make build VERSION=v0.12.0 stamps the version `tidemark version` prints.
build:
	go build $(if $(VERSION),-ldflags "-X main.version=$(VERSION)") -o $(BIN)/tidemark ./cmd/tidemark

# The container image as a tarball, without Docker (docs/container.md):
# podman load -i .bin/tidemark-image.tar
image:
	go run ./deploy/container/build -out $(BIN)/tidemark-image.tar $(if $(VERSION),-version $(VERSION))

# Programs we did not write, that the tests check us with.
tools: $(BIN)/hammer $(BIN)/fsck $(BIN)/versitygw
$(BIN)/hammer $(BIN)/fsck:
	GOBIN=$(BIN) go install $(TESSERA)/internal/hammer@$(TESSERA_VERSION) $(TESSERA)/cmd/fsck@$(TESSERA_VERSION)
$(BIN)/versitygw:
	GOFLAGS= GOBIN=$(BIN) go install $(VERSITYGW)@$(VERSITYGW_VERSION)

test: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet ./...
	TIDEMARK_TOOLS=$(BIN) go test -count=1 -timeout 20m ./...

# Every fuzz target for FUZZTIME each (bench/fuzz.sh; CI runs 3s each).
fuzz:
	FUZZTIME=$${FUZZTIME:-60s} bench/fuzz.sh

# playwright-core for the browser test (internal/web/test), at the version
# package-lock.json pins.
web-deps:
	npm ci --prefix internal/web/test

# Screenshots of the web page, taken by the browser test against a real log
# with witnesses, into docs/screenshots (needs node and /usr/bin/chromium).
screenshots: web-deps
	CI=true TIDEMARK_SCREENSHOTS=$(CURDIR)/docs/screenshots go test -count=1 -run '^TestBrowser$$' ./cmd/tidemark
