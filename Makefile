# ginws: `make run` starts the example server, `make test` installs what the
# tests need and runs them all. See README.md.

GO        ?= go
ADDR      ?= 127.0.0.1:8080
ARGS      ?=
STATICCHECK_VERSION ?= v0.8.2
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
FUZZTIME  ?= 1m

.PHONY: run test test-go test-interop test-backplane lint bench bench-micro bench-compare fuzz

## run: the example server on $(ADDR) (echo, stream, object, chat, demo page)
## (built, then exec'd: `go run` exits 1 whenever it is interrupted, so
## Ctrl-C would fail make although the server exits 0)
run:
	$(GO) build -o bin/echo ./examples/echo && exec ./bin/echo -addr $(ADDR) $(ARGS)

## test: lint, every Go test with -race (unit, conformance), the idle
## memory test without it (the race detector doubles stacks), the Node ws
## interop and the headless Chromium test of the demo page, then the
## backplane adapters against real Redis and NATS brokers
test: lint test-go test-interop test-backplane

test-go:
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run '^TestIdleMemory$$' ./ginws

test-interop:
	bash interop/run.sh

test-backplane:
	bash backplane/run.sh

## lint: gofmt, go vet and staticcheck (pinned, installed with go install)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './*/node_modules/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	if [ -f bench/go.mod ]; then cd bench && $(GO) vet ./...; fi
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...
	if [ -f bench/go.mod ]; then cd bench && $(GOBIN)/staticcheck ./...; fi

## bench: micro-benchmarks of this module, then the comparison against
## other libraries (bench/, a separate module); results in bench/results/
bench: bench-micro bench-compare

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-compare:
	cd bench && GOWORK=off $(GO) test -run '^$$' -bench . -benchtime 3000x ./cmd/server
	bash bench/run.sh

## fuzz: each fuzz target for $(FUZZTIME)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) ./internal/frame
	$(GO) test -run '^$$' -fuzz '^FuzzUTF8$$' -fuzztime $(FUZZTIME) ./internal/frame
	$(GO) test -run '^$$' -fuzz '^FuzzParseClose$$' -fuzztime $(FUZZTIME) ./internal/frame
	$(GO) test -run '^$$' -fuzz '^FuzzInflate$$' -fuzztime $(FUZZTIME) ./internal/frame
