package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/clip"
)

// Fetcher fetches MTA-STS policies over HTTPS (RFC 8461 §3.3): from
// https://mta-sts.<domain>/.well-known/mta-sts.txt, with a certificate valid
// for that host, no redirects, status 200, media type text/plain and a size
// and time limit.
type Fetcher struct {
	// Port of the policy host; 0 means 443. Tests point it at a local
	// server.
	Port int
	// RootCAs verifies the policy host's certificate; nil means the system
	// roots.
	RootCAs *x509.CertPool
	// DialContext connects to the policy host ("mta-sts.<domain>:port"); nil
	// means a net.Dialer and the system resolver.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds the whole fetch; 0 means 10 s.
	Timeout time.Duration
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
}

// URL returns the policy URL for domain.
func (f *Fetcher) URL(domain string) string {
	host := "mta-sts." + domain
	if f.Port != 0 && f.Port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(f.Port))
	}
	return "https://" + host + "/.well-known/mta-sts.txt"
}

// Fetch downloads and parses the policy of domain. Errors wrap
// ErrPolicyFetch (transport, status, media type, size) or ErrPolicySyntax.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (*Policy, error) {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := f.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr := &http.Transport{
		Proxy:       nil, // talk to the policy host itself
		DialContext: dial,
		TLSClientConfig: &tls.Config{
			RootCAs:    f.RootCAs,
			MinVersion: tls.VersionTLS12,
			Time:       f.Now,
		},
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	url := f.URL(domain)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicyFetch, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		// The context deadline and the transport's header timeout are
		// the same limit: whichever fires first, say so plainly.
		var ne net.Error
		if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return nil, fmt.Errorf("%w: GET %s: no answer within %s", ErrPolicyFetch, url, timeout)
		}
		// %w keeps a certificate error visible to errors.As (TLSRPT's
		// sts-webpki-invalid, RFC 8460 §4.3.2.2).
		return nil, fmt.Errorf("%w: %w", ErrPolicyFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, fmt.Errorf("%w: GET %s: HTTP %d redirect to %q; MTA-STS forbids redirects (RFC 8461 §3.3)",
			ErrPolicyFetch, url, resp.StatusCode, clip.Text(resp.Header.Get("Location"), 100))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s: HTTP %s (want 200)", ErrPolicyFetch, url, resp.Status)
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("%w: GET %s: media type %q (want text/plain, RFC 8461 §3.2)", ErrPolicyFetch, url, clip.Text(ct, 60))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s: reading body: %v", ErrPolicyFetch, url, err)
	}
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("%w: GET %s: body larger than %d bytes", ErrPolicyFetch, url, MaxPolicySize)
	}
	return ParsePolicy(string(body))
}
