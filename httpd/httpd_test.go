package httpd

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, method, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Body.String()
}

func TestRoutes(t *testing.T) {
	// The page itself parses the window (report.Handler, tested there):
	// here only what the listener refuses before it.
	h := Handler(Options{
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "m 1\n") }),
		Index:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "report") }),
	})
	for _, tc := range []struct {
		method, target string
		code           int
		body           string
	}{
		{"GET", "/metrics", 200, "m 1\n"},
		{"HEAD", "/metrics", 200, ""},
		{"GET", "/healthz", 200, "ok\n"},
		{"GET", "/", 200, "report"},
		{"GET", "/?since=24h&domain=*.Example.com", 200, "report"},
		{"POST", "/metrics", 405, "method POST not allowed (this listener is read-only: GET or HEAD)\n"},
		{"DELETE", "/", 405, ""},
		{"GET", "/metrics?x=1", 400, "unknown query parameter \"x\" on /metrics (want none)\n"},
		{"GET", "/healthz?verbose", 400, ""},
		{"GET", "/?since=1h&since=2h", 400, "query parameter \"since\" given 2 times (want it once)\n"},
		{"GET", "/?bogus=1", 400, "unknown query parameter \"bogus\" on / (want since, until, domain)\n"},
		{"GET", "/?a=%zz", 400, ""},
		{"GET", "/other", 404, ""},
	} {
		code, body := get(t, h, tc.method, tc.target)
		if code != tc.code {
			t.Errorf("%s %s: %d %q, want %d", tc.method, tc.target, code, body, tc.code)
			continue
		}
		if tc.body != "" && body != tc.body {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.target, body, tc.body)
		}
		if code >= 400 && strings.Count(body, "\n") != 1 {
			t.Errorf("%s %s: error body %q is not one line", tc.method, tc.target, body)
		}
	}
}

// TestNoIndex: without an Index, / is not mounted, and neither is
// /metrics without Metrics; /healthz always is.
func TestNoIndex(t *testing.T) {
	h := Handler(Options{Health: func() error { return errors.New("policy snapshot\nnot loaded") }})
	if code, _ := get(t, h, "GET", "/"); code != 404 {
		t.Errorf("GET / without Index: %d, want 404", code)
	}
	if code, _ := get(t, h, "GET", "/metrics"); code != 404 {
		t.Errorf("GET /metrics without Metrics: %d, want 404", code)
	}
	if code, body := get(t, h, "GET", "/healthz"); code != 503 || body != "policy snapshot not loaded\n" {
		t.Errorf("GET /healthz unhealthy: %d %q", code, body)
	}
}

// TestListener runs the real listener on loopback: limits on headers and
// bodies, and a Shutdown that may be called twice.
func TestListener(t *testing.T) {
	s, err := Listen(context.Background(), "127.0.0.1:0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr().String()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("healthz: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", base+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 2*MaxHeaderBytes))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized header: %d, want 431", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", base+"/healthz", strings.NewReader("body"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("GET with a body: %d, want 413", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after Shutdown")
	}
}

// FuzzQuery: whatever the query string, / and /metrics answer 200 or a
// 400 with a one-line reason, and never panic.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"", "since=24h", "since=2026-11-01&until=now&domain=*.example.com", "since=x", "a=%zz",
		"domain=%0a", "since=1h&since=2h", "until=1h", "domain=%5B::1%5D", ";", "since=99999999999999d", "domain=" + strings.Repeat("a.", 200)} {
		f.Add(s)
	}
	h := Handler(Options{
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "m 1\n") }),
		Index:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "report") }),
	})
	f.Fuzz(func(t *testing.T, q string) {
		for _, path := range []string{"/", "/metrics"} {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.Path, req.URL.RawQuery = path, q
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body := rec.Body.String()
			switch rec.Code {
			case 200:
			case 400:
				if strings.Count(body, "\n") != 1 || len(body) > 300 {
					t.Fatalf("%s?%q: 400 body %q is not one short line", path, q, body)
				}
			default:
				t.Fatalf("%s?%q: %d %q", path, q, rec.Code, body)
			}
		}
	})
}
