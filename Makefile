# mailtls — see README.md. Every target works on a fresh Debian machine with Go installed.
GO          ?= go
BIN         := bin/mailtls
DB          ?= $(CURDIR)/var/mailtls.db
LOG         ?= /var/log/mail.log
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS        := ./...

.PHONY: all build run test check bench faults fmt vet staticcheck deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/mailtls

# The main job: policy daemon + log follower, with working defaults.
# The log need not exist yet: mailtls waits for it.
run: build
	@mkdir -p $(dir $(DB))
	./$(BIN) run --db $(DB) --log $(LOG)

# Installs what the tests need (Postfix, swaks, chromium) when missing, then runs every test,
# including the end-to-end suite against a real Postfix.
test: deps
	$(GO) test -count=1 -timeout 30m $(PKGS)

deps:
	@bash .ci/deps

check: deps
	@echo "gofmt"; out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)
	$(GO) test -race -count=1 -timeout 40m $(PKGS)

bench: build
	@bash bench/run.sh

faults: build
	@bash bench/faults.sh

clean:
	rm -rf bin
