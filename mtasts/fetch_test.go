package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/testnet"
)

// TestFetcher serves good and bad policies from a local HTTPS server
// whose certificate names the mta-sts hosts; the dial seam routes every
// host to it.
func TestFetcher(t *testing.T) {
	ca := testnet.NewCA(t)
	hosts := []string{"mta-sts.good.example", "mta-sts.crlf.example", "mta-sts.bad.example", "mta-sts.redirect.example",
		"mta-sts.html.example", "mta-sts.big.example", "mta-sts.missing.example", "mta-sts.slow.example"}
	cert := testnet.Leaf(t, ca, testnet.Now.AddDate(0, -1, 0), testnet.Now.AddDate(0, 1, 0), hosts...)
	wrong := testnet.Leaf(t, ca, testnet.Now.AddDate(0, -1, 0), testnet.Now.AddDate(0, 1, 0), "www.wrongname.example")

	var (
		mu    sync.Mutex
		paths []string
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		switch host {
		case "mta-sts.good.example", "mta-sts.wrongname.example":
			w.Write([]byte("version: STSv1\nmode: enforce\nmx: mx.good.example\nmax_age: 86400\n"))
		case "mta-sts.crlf.example":
			w.Header().Set("Content-Type", "text/plain; charset=us-ascii")
			w.Write([]byte("version: STSv1\r\nmode: testing\r\nmx: *.crlf.example\r\nmax_age: 3600\r\n"))
		case "mta-sts.bad.example":
			w.Write([]byte("version: STSv1\nmode: enforce\nmax_age: 86400\n"))
		case "mta-sts.redirect.example":
			http.Redirect(w, r, "https://mta-sts.good.example/.well-known/mta-sts.txt", http.StatusMovedPermanently)
		case "mta-sts.html.example":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("version: STSv1\nmode: none\nmax_age: 1\n"))
		case "mta-sts.big.example":
			w.Write([]byte("version: STSv1\nmode: none\nmax_age: 1\n" + strings.Repeat("x: y\n", MaxPolicySize/5)))
		case "mta-sts.slow.example":
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	})
	newServer := func(c tls.Certificate) string {
		srv := httptest.NewUnstartedServer(handler)
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{c}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	addr, wrongAddr := newServer(cert), newServer(wrong)
	f := &Fetcher{
		Port:    8443,
		RootCAs: ca.Pool,
		Timeout: 2 * time.Second,
		Now:     func() time.Time { return testnet.Now },
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if !strings.HasSuffix(a, ":8443") {
				t.Errorf("dial %s, want port 8443", a)
			}
			to := addr
			if strings.HasPrefix(a, "mta-sts.wrongname.example:") {
				to = wrongAddr
			}
			return (&net.Dialer{}).DialContext(ctx, network, to)
		},
	}
	if got := f.URL("good.example"); got != "https://mta-sts.good.example:8443/.well-known/mta-sts.txt" {
		t.Errorf("URL = %s", got)
	}
	if got := (&Fetcher{}).URL("good.example"); got != "https://mta-sts.good.example/.well-known/mta-sts.txt" {
		t.Errorf("default URL = %s", got)
	}

	p, err := f.Fetch(context.Background(), "good.example")
	if err != nil || p.Mode != ModeEnforce || len(p.MX) != 1 || p.MX[0] != "mx.good.example" {
		t.Errorf("good: %+v, %v", p, err)
	}
	p, err = f.Fetch(context.Background(), "crlf.example")
	if err != nil || p.Mode != ModeTesting || p.MaxAge != 3600 || p.MX[0] != "*.crlf.example" {
		t.Errorf("crlf: %+v, %v", p, err)
	}

	bad := []struct {
		domain   string
		sentinel error
		want     string
	}{
		{"bad.example", ErrPolicySyntax, "missing mx"},
		{"redirect.example", ErrPolicyFetch, "HTTP 301 redirect"},
		{"html.example", ErrPolicyFetch, "media type \"text/html\""},
		{"big.example", ErrPolicyFetch, "larger than 65536 bytes"},
		{"missing.example", ErrPolicyFetch, "HTTP 404"},
		{"wrongname.example", ErrPolicyFetch, "certificate is valid for www.wrongname.example"},
	}
	for _, tc := range bad {
		p, err := f.Fetch(context.Background(), tc.domain)
		if err == nil || !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %+v, %v; want %v with %q", tc.domain, p, err, tc.sentinel, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, path := range paths {
		if path != "/.well-known/mta-sts.txt" {
			t.Errorf("fetched %s (followed a redirect?)", path)
		}
	}

	// A server that never answers is cut off at the fetch timeout.
	f.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err = f.Fetch(context.Background(), "slow.example")
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Errorf("slow: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("slow fetch took %s", el)
	}

	// Certificate validity follows the clock seam, not the real time.
	f.Timeout = 2 * time.Second
	f.Now = func() time.Time { return testnet.Now.AddDate(1, 0, 0) }
	if _, err := f.Fetch(context.Background(), "good.example"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired policy host certificate: %v", err)
	}
}
