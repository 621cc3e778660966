# mailtls — see README.md. Every target works on a fresh Debian machine with Go installed.
GO          ?= go
BIN         := bin/mailtls
DB          ?= $(CURDIR)/var/mailtls.db
LOG         ?= /var/log/mail.log
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS        := ./...

.PHONY: all build run test check large-files bench faults fmt vet staticcheck deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/mailtls

# The main job: policy daemon + log follower, with working defaults.
# The log need not exist yet: mailtls waits for it.
run: build
	@mkdir -p $(dir $(DB))
	./$(BIN) run --db $(DB) --log $(LOG)

# Installs what the tests need (Postfix, swaks, chromium, PostgreSQL) when missing, then runs
# every test, including the end-to-end suite against a real Postfix, and the command tests
# once more with their databases on PostgreSQL (MAILTLS_TEST_PG=off skips those).
test: deps
	$(GO) test -count=1 -timeout 30m $(PKGS)
	MAILTLS_TEST_CLI_ENGINE=postgres $(GO) test -count=1 -timeout 10m ./cmd/mailtls/

deps:
	@bash .ci/deps

check: deps large-files
	@echo "gofmt"; out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) test -race -count=1 -timeout 40m $(PKGS)

# No build output or other big blobs in the repository: every tracked file
# outside a testdata/ directory must be at most 1 MB (1,048,576 bytes).
fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

large-files:
	@echo "large files"; if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then echo "not a git checkout: large-files skipped"; exit 0; fi; \
	git ls-files -z | xargs -0 -r stat -c '%s %n' -- 2>/dev/null | \
	awk '{ n = substr($$0, length($$1) + 2) } $$1 > 1048576 && n !~ /(^|\/)testdata\// { printf "tracked file %s is %d bytes, over 1 MB: build output? (git rm --cached it; test data goes under testdata/)\n", n, $$1; bad = 1 } END { exit bad }'

bench: build
	@bash bench/run.sh

faults: build
	@bash bench/faults.sh

clean:
	rm -rf bin
