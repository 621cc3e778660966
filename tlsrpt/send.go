package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"os/exec"
	"strings"
	"time"
)

// MaxReportSize caps a compressed report: a report larger than this is
// not sent (RFC 8460 §5.3 leaves the cap to the receiver; 1 MiB of gzip
// holds far more sessions than one domain has in a day).
const MaxReportSize = 1 << 20

// maxResponse caps what is read of an HTTPS receiver's answer.
const maxResponse = 64 << 10

// ErrSend is wrapped by every failure to hand a report to a rua.
var ErrSend = errors.New("tlsrpt: sending the report failed")

// Gzip compresses the report's JSON (RFC 8460 §5.3: application/tlsrpt+gzip).
// The output carries no name or time, so the same report compresses to
// the same bytes.
func Gzip(r Report) ([]byte, error) {
	data, err := Marshal(r)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if b.Len() > MaxReportSize {
		return nil, fmt.Errorf("%w: the compressed report is %d bytes, more than %d", ErrSend, b.Len(), MaxReportSize)
	}
	return b.Bytes(), nil
}

// ContactAddress returns the mail address of a tlsrpt-contact value
// ("mailto:tlsrpt@example.com" or "tlsrpt@example.com"), which is the
// From of mailed reports.
func ContactAddress(contact string) (string, error) {
	a := strings.TrimPrefix(strings.TrimSpace(contact), "mailto:")
	addr, err := mail.ParseAddress(a)
	if err != nil || addr.Name != "" || addr.Address != a {
		return "", fmt.Errorf("tlsrpt-contact %q is not a mail address (want e.g. tlsrpt@example.com or mailto:tlsrpt@example.com)", contact)
	}
	return addr.Address, nil
}

// MailtoAddress returns the address of a mailto: rua, without any
// ?header part.
func MailtoAddress(rua string) (string, error) {
	u, err := url.Parse(rua)
	if err != nil || !strings.EqualFold(u.Scheme, "mailto") || u.Opaque == "" {
		return "", fmt.Errorf("rua %q is not a mailto: URI", rua)
	}
	a, err := url.PathUnescape(u.Opaque)
	if err != nil {
		return "", fmt.Errorf("rua %q: %v", rua, err)
	}
	addr, err := mail.ParseAddress(a)
	if err != nil || addr.Name != "" || addr.Address != a || strings.HasPrefix(a, "-") {
		return "", fmt.Errorf("rua %q: %q is not a mail address", rua, a)
	}
	return a, nil
}

// submitter is the domain named as the report's submitter (RFC 8460 §5.3):
// the domain of the From address.
func submitter(from string) string {
	return from[strings.LastIndexByte(from, '@')+1:]
}

// FileName is the attachment's name (RFC 8460 §5.3):
// submitter!policy-domain!begin-timestamp!end-timestamp.json.gz, the
// timestamps in seconds since the epoch.
func FileName(sub string, r Report) string {
	start, _ := time.Parse(time.RFC3339, r.DateRange.Start)
	end, _ := time.Parse(time.RFC3339, r.DateRange.End)
	return fmt.Sprintf("%s!%s!%d!%d.json.gz", sub, r.Policies[0].Policy.Domain, start.Unix(), end.Unix())
}

// MailMessage is the report as a message (RFC 8460 §5.3): multipart/report
// with report-type tlsrpt, a text part for people and the gzip'd report.
// from is our contact address, to the rua's; now stamps Date.
func MailMessage(r Report, from, to string, now time.Time) ([]byte, error) {
	gz, err := Gzip(r)
	if err != nil {
		return nil, err
	}
	domain := r.Policies[0].Policy.Domain
	sub := submitter(from)
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	boundary := "tlsrpt-" + hex.EncodeToString(rnd[:])
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", "<"+from+">")
	h("To", "<"+to+">")
	h("Subject", mime.QEncoding.Encode("utf-8", fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", domain, sub, r.ReportID)))
	h("Date", now.UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+hex.EncodeToString(rnd[:])+"@"+sub+">")
	h("TLS-Report-Domain", domain)
	h("TLS-Report-Submitter", sub)
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type="tlsrpt"; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n", boundary)
	s := r.Totals()
	fmt.Fprintf(&b, "This is an aggregate TLS report (RFC 8460) from %s for %s, %s to %s:\r\n%d successful and %d failed TLS sessions.\r\n\r\n",
		sub, domain, r.DateRange.Start, r.DateRange.End, s.Successful, s.Failed)
	name := FileName(sub, r)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/tlsrpt+gzip; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
		boundary, name, name)
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes(), nil
}

// Sendmail submits a message through Postfix's sendmail(1): Path -i -f
// from -- to, the message on standard input.
type Sendmail struct {
	Path    string
	Timeout time.Duration
}

// Send runs sendmail; its exit status and output decide.
func (s Sendmail) Send(ctx context.Context, from, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Path, "-i", "-f", from, "--", to)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return fmt.Errorf("%w: %s -i -f %s -- %s: %v %s", ErrSend, s.Path, from, to, err, msg)
	}
	return nil
}

// HTTPS posts reports (RFC 8460 §5.3.1): application/tlsrpt+gzip, a 2xx
// answer is success, redirects are not followed.
type HTTPS struct {
	// Client's Timeout bounds each post; its CheckRedirect is replaced.
	Client *http.Client
}

// Post sends the compressed report gz to url.
func (h HTTPS) Post(ctx context.Context, url string, gz []byte) error {
	c := *h.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gz))
	if err != nil {
		return fmt.Errorf("%w: POST %s: %v", ErrSend, url, err)
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%w: POST %s: %v", ErrSend, url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse)) //nolint:errcheck // drained for reuse only
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: POST %s: HTTP %s (want 2xx; redirects are not followed)", ErrSend, url, resp.Status)
	}
	return nil
}
