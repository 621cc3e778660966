package store

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/dnsname"
	"github.com/mailtls/mailtls/policyd"
)

// matcher selects deliveries by destination. It renders constant SQL
// fragments; the user's values only travel as parameters.
type matcher struct {
	kind   matchKind
	domain string // exact/tree/subs, in A-label form
	// udomain is domain in U-label form when it holds xn-- labels, else
	// "": deliveries keep the domain as the log spelled it, and Postfix
	// logs an SMTPUTF8 recipient's domain in U-labels, so a filter
	// matches either spelling.
	udomain string
	host    string // relay
	port    int    // relay
	// fleet, when not "", also keeps only the rows of that fleet host
	// (Window.Host; see hosts.go), whatever the kind.
	fleet string
}

type matchKind int

const (
	matchAll   matchKind = iota
	matchExact           // example.com
	matchTree            // *.example.com: example.com and its subdomains
	matchSubs            // .example.com: subdomains only (Postfix parent-domain key)
	matchRelay           // [host]:port: deliveries whose relay is host, port
)

// parseDomainFilter parses Filter.Domain / Window.Domain. The domain may
// be given in A-labels or U-labels ("bücher.example" is
// "xn--bcher-kva.example").
func parseDomainFilter(s string) (matcher, error) {
	d := strings.TrimSuffix(strings.TrimSpace(s), ".")
	kind := matchExact
	switch {
	case d == "":
		return matcher{kind: matchAll}, nil
	case strings.HasPrefix(d, "*."):
		kind, d = matchTree, d[2:]
	case strings.HasPrefix(d, "."):
		kind, d = matchSubs, d[1:]
	}
	a, err := dnsname.ToASCII(d)
	if err == nil {
		err = dnsname.Check(a)
	}
	if err != nil {
		return matcher{}, fmt.Errorf("%w: domain filter %q: %v; accepted: example.com, *.example.com (with subdomains), .example.com (subdomains only), in A-labels or U-labels (xn--bcher-kva.example or bücher.example)",
			ErrBadInput, s, err)
	}
	m := matcher{kind: kind, domain: a}
	if strings.Contains(a, "xn--") {
		if u, err := dnsname.ToUnicode(a); err == nil && u != a {
			m.udomain = u
		}
	}
	return m, nil
}

// windowMatcher parses the Domain and Host of a Filter or Window.
func windowMatcher(domain, host string) (matcher, error) {
	m, err := parseDomainFilter(domain)
	if err != nil || host == "" {
		return m, err
	}
	if m.fleet, err = CheckHost(host); err != nil {
		return matcher{}, err
	}
	return m, nil
}

// withFleet adds the host condition of m to a condition over a table
// with a host_id column.
func (m matcher) withFleet(q string, args []any) (string, []any) {
	if m.fleet == "" {
		return q, args
	}
	if q == "1" {
		return hostSQL, []any{m.fleet}
	}
	return "(" + q + " AND " + hostSQL + ")", cat(args, []any{m.fleet})
}

// parseOverrideKey parses a policy table key (policyd.ParseKey):
// "example.com" (exact), ".example.com" (subdomains only) or
// "[host]:port" / "[host]" (port 25), which matches deliveries whose
// logged relay is host[addr]:port. A domain with a port, or a port given
// by service name, is a transport next-hop the log cannot tell apart.
func parseOverrideKey(key string) (matcher, error) {
	bad := fmt.Errorf("%w: override key %q; accepted: example.com, .example.com, [host]:port", ErrBadInput, key)
	k, err := policyd.ParseKey(key)
	if err != nil {
		return matcher{}, bad
	}
	switch {
	case k.Bracketed:
		port := 25
		if k.Port != "" {
			if port, err = strconv.Atoi(k.Port); err != nil {
				return matcher{}, bad
			}
		}
		return matcher{kind: matchRelay, host: strings.TrimPrefix(k.Host, "ipv6:"), port: port}, nil
	case k.Port != "":
		return matcher{}, bad
	}
	// example.com or .example.com, in normal form: the domain filter's
	// matcher (with the U-label spelling of an A-label domain).
	m, err := parseDomainFilter(k.Text)
	if err != nil {
		return matcher{}, bad
	}
	return m, nil
}

// likeEscape quotes LIKE metacharacters, for ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}

// rawWhere is the condition over the deliveries table. The patterns use
// LIKE, which both engines have (SQLite has no ~, PostgreSQL no GLOB):
// SQLite's LIKE ignores ASCII case, which changes nothing here, since
// stored domains, lower(relay) and the matcher's values are all lower case.
func (m matcher) rawWhere() (string, []any) {
	return m.withFleet(m.rawDomain())
}

func (m matcher) rawDomain() (string, []any) {
	if m.udomain != "" && m.kind != matchRelay {
		a, u := m, m
		a.udomain, u.domain, u.udomain = "", m.udomain, ""
		qa, aa := a.rawDomain()
		qu, au := u.rawDomain()
		return "(" + qa + " OR " + qu + ")", cat(aa, au)
	}
	switch m.kind {
	case matchExact:
		return "domain = ?", []any{m.domain}
	case matchTree:
		return `(domain = ? OR domain LIKE ? ESCAPE '\')`, []any{m.domain, "%." + likeEscape(m.domain)}
	case matchSubs:
		return `domain LIKE ? ESCAPE '\'`, []any{"%." + likeEscape(m.domain)}
	case matchRelay:
		return `lower(relay) LIKE ? ESCAPE '\'`, []any{likeEscape(m.host) + "[%]:" + strconv.Itoa(m.port)}
	}
	return "TRUE", nil
}

// rollWhere is the condition over rollup_day (or, for a matcher of kind
// matchAll, any rollup). Domains are stored reversed, so "subdomains of
// example.com" is the range of rdomain starting with "moc.elpmaxe.".
func (m matcher) rollWhere() (string, []any) {
	return m.withFleet(m.rollDomain())
}

func (m matcher) rollDomain() (string, []any) {
	if m.udomain != "" && m.kind != matchRelay {
		a, u := m, m
		a.udomain, u.domain, u.udomain = "", m.udomain, ""
		qa, aa := a.rollDomain()
		qu, au := u.rollDomain()
		return "(" + qa + " OR " + qu + ")", cat(aa, au)
	}
	r := reverse(m.domain)
	switch m.kind {
	case matchExact:
		return "rdomain = ?", []any{r}
	case matchTree:
		// [r, r+"/") holds r, r+".…" and also r+c… for c < '.', e.g.
		// "x-example.com"; the last term drops those.
		return "(rdomain >= ? AND rdomain < ? AND (rdomain = ? OR rdomain >= ?))", []any{r, r + "/", r, r + "."}
	case matchSubs:
		return "(rdomain >= ? AND rdomain < ?)", []any{r + ".", r + "/"}
	case matchRelay:
		return "(relay_host = ? AND relay_port = ?)", []any{m.host, m.port}
	}
	return "TRUE", nil
}
