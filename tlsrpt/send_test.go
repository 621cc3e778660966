package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"testing"
	"time"
)

// ReadMailed parses a mailed report back: the message's structure is
// checked on the way (RFC 8460 §5.3) and the attachment's JSON returned.
func readMailed(t *testing.T, msg []byte) (subject, filename string, report []byte) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Type") == "text/plain; charset=us-ascii" {
			continue
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "application/tlsrpt+gzip" || p.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Fatalf("attachment headers %v", p.Header)
		}
		_, dp, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		zr, err := gzip.NewReader(newBase64Reader(p))
		if err != nil {
			t.Fatal(err)
		}
		report, err = io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		filename = dp["filename"]
	}
	return m.Header.Get("Subject"), filename, report
}

func TestMailMessage(t *testing.T) {
	r := Build(sampleInput())
	msg, err := MailMessage(r, "tlsrpt@sender.example", "reports@dest.example", day)
	if err != nil {
		t.Fatal(err)
	}
	subject, filename, got := readMailed(t, msg)
	want, _ := Marshal(r)
	if !bytes.Equal(got, want) {
		t.Errorf("attachment:\n%s\nwant:\n%s", got, want)
	}
	if subject != "Report Domain: dest.example Submitter: sender.example Report-ID: <"+r.ReportID+">" {
		t.Errorf("Subject %q", subject)
	}
	if filename != "sender.example!dest.example!1795996800!1796083199.json.gz" {
		t.Errorf("filename %q", filename)
	}
	for _, h := range []string{"TLS-Report-Domain: dest.example\r\n", "TLS-Report-Submitter: sender.example\r\n", "From: <tlsrpt@sender.example>\r\n"} {
		if !bytes.Contains(msg, []byte(h)) {
			t.Errorf("no %q header", h)
		}
	}
}

func TestAddresses(t *testing.T) {
	for in, want := range map[string]string{"mailto:r@dest.example": "r@dest.example", "mailto:r@dest.example?subject=x": "r@dest.example"} {
		if got, err := MailtoAddress(in); got != want || err != nil {
			t.Errorf("MailtoAddress(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"mailto:-oQ/tmp@x", "mailto:a@b%0ABcc:c@d", "https://x/", "mailto:nobody"} {
		if got, err := MailtoAddress(in); err == nil {
			t.Errorf("MailtoAddress(%q) = %q, want an error", in, got)
		}
	}
	if a, err := ContactAddress("mailto:tlsrpt@sender.example"); a != "tlsrpt@sender.example" || err != nil {
		t.Errorf("ContactAddress: %q %v", a, err)
	}
	if _, err := ContactAddress("https://sender.example/contact"); err == nil || !strings.Contains(err.Error(), "not a mail address") {
		t.Errorf("ContactAddress(https): %v", err)
	}
}

func TestHTTPSPost(t *testing.T) {
	r := Build(sampleInput())
	gz, err := Gzip(r)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	var ctype string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/redirect":
			http.Redirect(w, req, "/ok", http.StatusFound)
		case "/ok":
			ctype = req.Header.Get("Content-Type")
			got, _ = io.ReadAll(req.Body)
			w.WriteHeader(http.StatusCreated)
		default:
			http.Error(w, "no", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	c := srv.Client()
	c.Timeout = 5 * time.Second
	h := HTTPS{Client: c}
	ctx := context.Background()
	if err := h.Post(ctx, srv.URL+"/ok", gz); err != nil || !bytes.Equal(got, gz) || ctype != "application/tlsrpt+gzip" {
		t.Errorf("Post = %v; body %d bytes (want %d), Content-Type %q", err, len(got), len(gz), ctype)
	}
	got = nil
	if err := h.Post(ctx, srv.URL+"/redirect", gz); err == nil || !strings.Contains(err.Error(), "302") || got != nil {
		t.Errorf("redirect: %v (followed: %v)", err, got != nil)
	}
	if err := h.Post(ctx, srv.URL+"/down", gz); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: %v", err)
	}
}

func newBase64Reader(r io.Reader) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, r)
}
