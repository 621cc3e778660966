package discover

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/clip"
	"github.com/mailtls/mailtls/mtasts"
)

// ErrTLSRPTSyntax is wrapped by every TLSRPT record parse error.
var ErrTLSRPTSyntax = errors.New("discover: invalid TLSRPT TXT record")

// TLSRPTRecord is a parsed _smtp._tls TXT record (RFC 8460 §3).
type TLSRPTRecord struct {
	Version string `json:"version"`
	// RUA lists where reports go: mailto: and https: URIs.
	RUA        []string           `json:"rua"`
	Extensions []mtasts.Extension `json:"extensions,omitempty"`
}

// ParseTLSRPTRecord parses a record such as
// "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://r.example.net/v1"
// (RFC 8460 §3). It must start with v=TLSRPTv1 and have exactly one rua
// field of one or more comma-separated mailto: or https: URIs.
func ParseTLSRPTRecord(txt string) (TLSRPTRecord, error) {
	bad := func(format string, args ...any) (TLSRPTRecord, error) {
		return TLSRPTRecord{}, fmt.Errorf("%w: %s (record %q; want e.g. \"v=TLSRPTv1; rua=mailto:tlsrpt@example.com\")",
			ErrTLSRPTSyntax, fmt.Sprintf(format, args...), clip.Text(txt, 100))
	}
	rec := TLSRPTRecord{Version: "TLSRPTv1"}
	seenRUA := false
	ext, err := mtasts.ParseTagRecord(txt, "TLSRPTv1", func(k, v string) (bool, error) {
		if k != "rua" {
			return false, nil
		}
		if seenRUA {
			return true, errors.New("more than one rua field (list the URIs in one, separated by \",\")")
		}
		seenRUA = true
		for _, u := range strings.Split(v, ",") {
			u = strings.Trim(u, " \t")
			if err := checkRUA(u); err != nil {
				return true, err
			}
			rec.RUA = append(rec.RUA, u)
		}
		return true, nil
	})
	if err != nil {
		return bad("%v", err)
	}
	rec.Extensions = ext
	if !seenRUA {
		return bad("missing rua")
	}
	return rec, nil
}

// checkRUA validates one tlsrpt-uri. RFC 8460 §3 defines the mailto and
// https schemes; a literal "," or "!" must be percent-encoded.
func checkRUA(u string) error {
	if u == "" {
		return errors.New("empty rua URI")
	}
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] >= 0x7f || u[i] == '!' {
			return fmt.Errorf("rua URI %q has a space, \"!\" or a non-printable character", clip.Text(u, 60))
		}
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("rua URI %q: %v", clip.Text(u, 60), err)
	}
	switch strings.ToLower(p.Scheme) {
	case "mailto":
		if p.Opaque == "" || !strings.Contains(p.Opaque, "@") {
			return fmt.Errorf("rua URI %q has no mail address", clip.Text(u, 60))
		}
	case "https":
		if p.Host == "" {
			return fmt.Errorf("rua URI %q has no host", clip.Text(u, 60))
		}
	default:
		return fmt.Errorf("rua URI %q: scheme must be mailto or https", clip.Text(u, 60))
	}
	return nil
}

// LookupTLSRPT looks up and parses the _smtp._tls TXT record of domain d
// (RFC 8460 §3) through res. It returns nil when d publishes none; a
// lookup failure or an unusable record is reported in Error, with Record
// holding the record's text when there is one.
func LookupTLSRPT(ctx context.Context, res *Resolver, d string) *TLSRPTInfo {
	a, err := res.Lookup(ctx, "_smtp._tls."+d, dns.TypeTXT)
	if err != nil {
		return &TLSRPTInfo{Error: err.Error()}
	}
	txt, selErr := mtasts.SelectRecord(txtStrings(a), "v=TLSRPTv1")
	if txt == "" {
		return nil
	}
	info := &TLSRPTInfo{Record: txt}
	if selErr != nil {
		info.Error = selErr.Error()
		return info
	}
	rec, err := ParseTLSRPTRecord(txt)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	info.RUA = rec.RUA
	return info
}
