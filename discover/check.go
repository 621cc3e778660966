package discover

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/dnsname"
	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/mtasts"
)

// ErrBadInput is wrapped by errors about the domain or settings passed to
// a check.
var ErrBadInput = errors.New("discover: invalid input")

// DefaultTimeout bounds a whole check unless Checker.Timeout says otherwise.
const DefaultTimeout = 30 * time.Second

// maxMX bounds how many MX hosts are examined.
const maxMX = 10

// Checker examines a mail domain. The zero value is not usable: Resolver
// must be set. A Checker may be used for several checks, also concurrently.
type Checker struct {
	Resolver *Resolver
	// Timeout bounds the whole check; 0 means DefaultTimeout. Each step
	// has its own limit from Timeouts, whose zero fields are derived from
	// Timeout by TimeoutsFor.
	Timeout  time.Duration
	Timeouts Timeouts
	// Port is the SMTP port; 0 means 25.
	Port int
	// HELO is the EHLO name; "" means the host name.
	HELO string
	// DialSMTP connects to an MX; nil means a net.Dialer.
	DialSMTP DialFunc
	// RootCAs verifies MX certificates and the MTA-STS policy host; nil
	// means the system roots.
	RootCAs *x509.CertPool
	// MTASTSPort is the HTTPS port of mta-sts.<domain>; 0 means 443.
	MTASTSPort int
	// DialHTTPS connects to the MTA-STS policy host; nil resolves it
	// through Resolver and dials the first address that answers.
	DialHTTPS func(ctx context.Context, network, addr string) (net.Conn, error)
	// AllowPrivate lets the check connect to addresses that are not
	// public (loopback, private, link-local, documentation, ...: see
	// NonPublic). Without it such addresses are never contacted, so that
	// a domain's DNS cannot make the check probe our own network.
	AllowPrivate bool
	// Now is the clock for certificate validity; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Report is the outcome of a check.
type Report struct {
	Domain  string    `json:"domain"`
	Checked time.Time `json:"checked"`
	// Resolvers are the DNS servers asked; ResolverNote explains a
	// fallback.
	Resolvers    []string `json:"resolvers"`
	ResolverNote string   `json:"resolver_note,omitempty"`
	// MXDNSSEC is the AD bit of the MX answer.
	MXDNSSEC bool `json:"mx_dnssec"`
	// NullMX is set when the domain publishes "MX 0 ." (RFC 7505).
	NullMX bool `json:"null_mx"`
	// ImplicitMX is set when there is no MX record and the domain's own
	// address records are used (RFC 5321 §5.1).
	ImplicitMX bool        `json:"implicit_mx"`
	MX         []MXReport  `json:"mx"`
	MTASTS     *MTASTSInfo `json:"mta_sts"`
	TLSRPT     *TLSRPTInfo `json:"tlsrpt"`
	// Errors are domain-level problems (MX lookup failure, NXDOMAIN, ...).
	Errors         []string       `json:"errors,omitempty"`
	Recommendation Recommendation `json:"recommendation"`
	DurationMS     int64          `json:"duration_ms"`
}

// MXReport is what was found about one MX host.
type MXReport struct {
	Host            string   `json:"host"`
	Preference      uint16   `json:"preference"`
	Addresses       []string `json:"addresses"`
	AddressesDNSSEC bool     `json:"addresses_dnssec"`
	AddressError    string   `json:"address_error,omitempty"`
	// NotProbed are the addresses left out because they are not public,
	// as "addr (kind)"; see Checker.AllowPrivate.
	NotProbed []string `json:"not_probed,omitempty"`
	// TLSA are the records at _25._tcp.<host> (RFC 7672 §2.2).
	TLSA       []TLSARecord `json:"tlsa"`
	TLSADNSSEC bool         `json:"tlsa_dnssec"`
	TLSAError  string       `json:"tlsa_error,omitempty"`
	// DANEMatch is set when the presented certificate matches a usable
	// TLSA record.
	DANEMatch bool `json:"dane_match"`
	// MTASTSMatch tells whether the host matches the MTA-STS mx patterns;
	// null without a policy.
	MTASTSMatch *bool `json:"mta_sts_match"`
	Probe       Probe `json:"probe"`
}

// TLSARecord is one TLSA record (RFC 6698 §2).
type TLSARecord struct {
	Usage        uint8  `json:"usage"`
	Selector     uint8  `json:"selector"`
	MatchingType uint8  `json:"matching_type"`
	Data         string `json:"data"`
	// Usable is false for the PKIX usages 0 and 1, which SMTP clients do
	// not use (RFC 7672 §3.1.3), and for unknown parameters.
	Usable bool `json:"usable"`
	// Matches is set when the record matches the presented chain.
	Matches bool `json:"matches"`
}

// MTASTSInfo is the domain's MTA-STS state.
type MTASTSInfo struct {
	Record      string         `json:"record"`
	ID          string         `json:"id,omitempty"`
	RecordError string         `json:"record_error,omitempty"`
	PolicyURL   string         `json:"policy_url,omitempty"`
	Policy      *mtasts.Policy `json:"policy"`
	PolicyError string         `json:"policy_error,omitempty"`
}

// Usable reports whether a sender would apply the policy: a valid record
// and a valid policy (RFC 8461 §3).
func (m *MTASTSInfo) Usable() bool {
	return m != nil && m.RecordError == "" && m.PolicyError == "" && m.Policy != nil
}

// TLSRPTInfo is the domain's TLSRPT record.
type TLSRPTInfo struct {
	Record string   `json:"record"`
	RUA    []string `json:"rua,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// NormalizeDomain lowercases a domain, converts an IDN to A-labels and
// checks the syntax. A trailing dot is dropped.
func NormalizeDomain(s string) (string, error) {
	orig := s
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	a, err := dnsname.ToASCII(s)
	if err == nil {
		err = dnsname.Check(a)
	}
	if err != nil {
		return "", fmt.Errorf("%w: domain %q: %v (want a mail domain such as example.com)", ErrBadInput, orig, err)
	}
	return a, nil
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Checker) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Check examines domain and returns a report with a recommendation. Lookup
// and probe failures end up in the report; an error is returned only for
// bad input or a missing resolver.
func (c *Checker) Check(ctx context.Context, domain string) (*Report, error) {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return nil, err
	}
	if c.Resolver == nil || len(c.Resolver.Servers) == 0 {
		return nil, ErrNoResolver
	}
	helo := c.HELO
	if helo == "" {
		helo, _ = os.Hostname()
		if helo == "" {
			helo = "localhost"
		}
	}
	if strings.ContainsAny(helo, " \t\r\n") || helo == "" {
		return nil, fmt.Errorf("%w: HELO name %q has white space or line breaks", ErrBadInput, helo)
	}
	total := c.Timeout
	if total <= 0 {
		total = DefaultTimeout
	}
	steps := c.Timeouts.orDefault(total)
	port := c.Port
	if port == 0 {
		port = 25
	}
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()

	start := time.Now()
	rep := &Report{Domain: d, Checked: c.now().UTC(), MX: []MXReport{},
		Resolvers: slices.Clone(c.Resolver.Servers), ResolverNote: c.Resolver.Note}
	res := *c.Resolver
	res.Timeout = steps.DNS
	r := &run{c: c, res: &res, steps: steps, port: port, helo: helo, log: c.log().With("domain", d)}

	var wg sync.WaitGroup
	wg.Go(func() { r.mxPath(ctx, rep) })
	wg.Go(func() { rep.MTASTS = r.mtasts(ctx, d) })
	wg.Go(func() { rep.TLSRPT = r.tlsrpt(ctx, d) })
	wg.Wait()

	if rep.MTASTS.Usable() {
		for i := range rep.MX {
			m := rep.MTASTS.Policy.MatchMX(rep.MX[i].Host)
			rep.MX[i].MTASTSMatch = &m
		}
	}
	rep.Recommendation = Recommend(rep)
	rep.DurationMS = time.Since(start).Milliseconds()
	return rep, nil
}

// run holds the settings of one check.
type run struct {
	c     *Checker
	res   *Resolver
	steps Timeouts
	port  int
	helo  string
	log   *slog.Logger
}

// mxPath finds the MX hosts, then examines them concurrently.
func (r *run) mxPath(ctx context.Context, rep *Report) {
	hosts, err := r.mxHosts(ctx, rep)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return
	}
	rep.MX = make([]MXReport, len(hosts))
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Go(func() { rep.MX[i] = r.examine(ctx, hosts[i]) })
	}
	wg.Wait()
}

// MXHost is one MX host: its name (lower case, no trailing dot) and
// preference.
type MXHost struct {
	Name string
	Pref uint16
}

// MXSet is an MX answer taken apart.
type MXSet struct {
	Hosts     []MXHost // distinct, by preference, then name; the implicit MX when Implicit
	Null      bool     // a null MX alone (RFC 7505): the domain accepts no mail; no Hosts
	NullMixed bool     // a null MX next to other MX records, ignored (RFC 7505 §3 forbids it)
	Implicit  bool     // no MX records: the domain itself, at preference 0 (RFC 5321 §5.1)
}

// ParseMX takes apart the MX records of domain (records of other types
// are skipped): the one reading of an MX answer, for the checks and the
// published resolver.
func ParseMX(domain string, rrs []dns.RR) MXSet {
	var set MXSet
	seen := map[string]bool{}
	null := false
	for _, rr := range rrs {
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		if name == "" {
			null = true
			continue
		}
		if !seen[name] {
			seen[name] = true
			set.Hosts = append(set.Hosts, MXHost{name, mx.Preference})
		}
	}
	switch {
	case null && len(set.Hosts) == 0:
		set.Null = true
		return set
	case len(set.Hosts) == 0:
		set.Implicit = true
		set.Hosts = []MXHost{{domain, 0}}
		return set
	}
	set.NullMixed = null
	slices.SortStableFunc(set.Hosts, func(x, y MXHost) int {
		if x.Pref != y.Pref {
			return int(x.Pref) - int(y.Pref)
		}
		return strings.Compare(x.Name, y.Name)
	})
	return set
}

// mxHosts looks up the MX records: sorted by preference, the null MX
// recognised (RFC 7505), the implicit MX used when there are none
// (RFC 5321 §5.1).
func (r *run) mxHosts(ctx context.Context, rep *Report) ([]MXHost, error) {
	d := rep.Domain
	a, err := r.res.Lookup(ctx, d, dns.TypeMX)
	if err != nil {
		return nil, fmt.Errorf("MX lookup: %v", err)
	}
	rep.MXDNSSEC = a.AD
	if a.NXDomain {
		return nil, fmt.Errorf("%s does not exist (NXDOMAIN)", d)
	}
	set := ParseMX(d, a.Records)
	if set.Null {
		rep.NullMX = true
		return nil, nil
	}
	if set.NullMixed {
		rep.Errors = append(rep.Errors, "a null MX (\"MX 0 .\") is published next to other MX records; RFC 7505 §3 forbids that and it was ignored")
	}
	rep.ImplicitMX = set.Implicit
	hosts := set.Hosts
	if len(hosts) > maxMX {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%d MX hosts; only the first %d were examined", len(hosts), maxMX))
		hosts = hosts[:maxMX]
	}
	return hosts, nil
}

// examine looks up one MX host's addresses and TLSA records, then probes
// it.
func (r *run) examine(ctx context.Context, h MXHost) MXReport {
	m := MXReport{Host: h.Name, Preference: h.Pref, Addresses: []string{}, TLSA: []TLSARecord{}}
	var (
		wg      sync.WaitGroup
		a4, a6  Answer
		e4, e6  error
		tlsa    Answer
		tlsaErr error
	)
	wg.Go(func() { a4, e4 = r.res.Lookup(ctx, h.Name, dns.TypeA) })
	wg.Go(func() { a6, e6 = r.res.Lookup(ctx, h.Name, dns.TypeAAAA) })
	wg.Go(func() { tlsa, tlsaErr = r.res.Lookup(ctx, "_25._tcp."+h.Name, dns.TypeTLSA) })
	wg.Wait()

	var addrs []string
	for _, rr := range a4.Records {
		addrs = append(addrs, rr.(*dns.A).A.String())
	}
	for _, rr := range a6.Records {
		addrs = append(addrs, rr.(*dns.AAAA).AAAA.String())
	}
	m.Addresses = append(m.Addresses, addrs...)
	var aerrs []string
	for _, e := range []error{e4, e6} {
		if e != nil {
			aerrs = append(aerrs, e.Error())
		}
	}
	m.AddressError = strings.Join(aerrs, "; ")
	m.AddressesDNSSEC = e4 == nil && e6 == nil && a4.AD && a6.AD
	if len(addrs) == 0 && m.AddressError == "" {
		m.AddressError = "no A or AAAA records"
		if a4.NXDomain {
			m.AddressError = h.Name + " does not exist (NXDOMAIN)"
		}
	}
	if tlsaErr != nil {
		m.TLSAError = tlsaErr.Error()
	} else {
		m.TLSADNSSEC = tlsa.AD
		for _, rr := range tlsa.Records {
			t := rr.(*dns.TLSA)
			m.TLSA = append(m.TLSA, TLSARecord{
				Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType,
				Data:   strings.ToLower(t.Certificate),
				Usable: (t.Usage == 2 || t.Usage == 3) && t.Selector <= 1 && t.MatchingType <= 2,
			})
		}
	}

	probe := addrs
	if !r.c.AllowPrivate {
		probe, m.NotProbed = splitPublic(addrs)
	}
	if len(addrs) > 0 && len(probe) == 0 {
		m.Probe = Probe{FailedStep: StepAddress, Error: notPublicError(m.NotProbed)}
		r.log.Debug("mx not probed", "mx", h.Name, "error", m.Probe.Error)
		return m
	}
	hostports := make([]string, len(probe))
	for i, ip := range probe {
		hostports[i] = net.JoinHostPort(ip, strconv.Itoa(r.port))
	}
	p := Prober{HELO: r.helo, Timeouts: r.steps, Dial: r.c.DialSMTP, RootCAs: r.c.RootCAs, Now: r.c.Now}
	m.Probe = p.Probe(ctx, h.Name, hostports)
	if m.Probe.TLS != nil {
		m.DANEMatch = daneMatch(m.TLSA, m.Probe.TLS, h.Name, r.c.now())
	}
	r.log.Debug("mx probed", "mx", h.Name, "address", m.Probe.Address, "starttls", m.Probe.STARTTLS,
		"tls", m.Probe.TLS != nil, "step", m.Probe.FailedStep, "error", m.Probe.Error)
	return m
}

// daneMatch marks the TLSA records that match the presented chain and
// reports whether one usable record does (RFC 7672 §3.1): DANE-EE(3)
// against the leaf, whatever its names and dates; DANE-TA(2) against a
// certificate of the chain that the leaf chains up to, with the MX name
// checked.
func daneMatch(recs []TLSARecord, t *TLSResult, host string, now time.Time) bool {
	if len(t.chain) == 0 {
		return false
	}
	leaf := t.chain[0]
	ok := false
	for i := range recs {
		rec := &recs[i]
		if !rec.Usable {
			continue
		}
		switch rec.Usage {
		case 3:
			rec.Matches = tlsaMatches(rec, leaf)
		case 2:
			for _, ta := range t.chain[1:] {
				if !tlsaMatches(rec, ta) {
					continue
				}
				roots := x509.NewCertPool()
				roots.AddCert(ta)
				inter := x509.NewCertPool()
				for _, c := range t.chain[1:] {
					inter.AddCert(c)
				}
				_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, DNSName: host})
				rec.Matches = err == nil
				break
			}
		}
		ok = ok || rec.Matches
	}
	return ok
}

// tlsaMatches compares one certificate with a TLSA record (RFC 6698 §2.1).
func tlsaMatches(rec *TLSARecord, c *x509.Certificate) bool {
	want, err := hex.DecodeString(rec.Data)
	if err != nil {
		return false
	}
	var data []byte
	switch rec.Selector {
	case 0:
		data = c.Raw
	case 1:
		data = c.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch rec.MatchingType {
	case 0:
	case 1:
		s := sha256.Sum256(data)
		data = s[:]
	case 2:
		s := sha512.Sum512(data)
		data = s[:]
	default:
		return false
	}
	return string(data) == string(want)
}

// txtStrings returns each TXT record as one string (its character-strings
// concatenated, RFC 8461 §3.1, RFC 8460 §3).
func txtStrings(a Answer) []string {
	var out []string
	for _, rr := range a.Records {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out
}

// mtasts looks up the _mta-sts record and, if one is published, fetches
// the policy. It returns nil when the domain has no MTA-STS record.
func (r *run) mtasts(ctx context.Context, d string) *MTASTSInfo {
	a, err := r.res.Lookup(ctx, "_mta-sts."+d, dns.TypeTXT)
	if err != nil {
		return &MTASTSInfo{RecordError: err.Error()}
	}
	txt, selErr := mtasts.SelectRecord(txtStrings(a), "v=STSv1")
	if txt == "" {
		return nil
	}
	info := &MTASTSInfo{Record: txt}
	if selErr != nil {
		info.RecordError = selErr.Error()
	} else if rec, err := mtasts.ParseRecord(txt); err != nil {
		info.RecordError = err.Error()
	} else {
		info.ID = rec.ID
	}
	f := &mtasts.Fetcher{Port: r.c.MTASTSPort, RootCAs: r.c.RootCAs, DialContext: r.c.DialHTTPS, Timeout: r.steps.HTTP, Now: r.c.Now}
	if f.DialContext == nil {
		f.DialContext = r.dialResolved
	}
	info.PolicyURL = f.URL(d)
	p, err := f.Fetch(ctx, d)
	if err != nil {
		info.PolicyError = err.Error()
	} else {
		info.Policy = p
	}
	return info
}

// dialResolved resolves addr's host through the check's resolver, so the
// policy host is found the same way as everything else, and dials the
// addresses in turn.
func (r *run) dialResolved(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := r.res.Lookup(ctx, host, t)
		if err != nil {
			return nil, err
		}
		for _, rr := range a.Records {
			switch v := rr.(type) {
			case *dns.A:
				ips = append(ips, v.A.String())
			case *dns.AAAA:
				ips = append(ips, v.AAAA.String())
			}
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s has no A or AAAA records", host)
	}
	if !r.c.AllowPrivate {
		var skipped []string
		if ips, skipped = splitPublic(ips); len(ips) == 0 {
			return nil, fmt.Errorf("%s not fetched: none of its addresses is public: %s", host, strings.Join(skipped, ", "))
		}
	}
	var errs []error
	for _, ip := range ips {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(ip, port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// tlsrpt looks up the _smtp._tls record; nil when there is none.
func (r *run) tlsrpt(ctx context.Context, d string) *TLSRPTInfo {
	return LookupTLSRPT(ctx, r.res, d)
}
