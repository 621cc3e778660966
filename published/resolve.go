package published

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/mtasts"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/tlsrpt"
)

// maxMX bounds how many MX hosts are examined, as discover does.
const maxMX = 10

// Times between resolutions of one destination.
const (
	// minRefresh: never resolve a destination again sooner, whatever the
	// TTLs say.
	minRefresh = time.Minute
	// retryDelay: after a lookup or fetch failed, try again this soon
	// (RFC 2308 §7.1 caps the caching of a server failure at 5 minutes).
	retryDelay = 5 * time.Minute
	// maxStale: how long a DANE answer is kept while its refresh fails.
	maxStale = 24 * time.Hour
)

// state is what is known about one destination.
type state struct {
	result    Result
	refreshAt time.Time  // resolve again after this
	policy    *stsPolicy // the RFC 8461 policy cache; nil: none
	failed    bool       // a lookup or fetch failed (not stored)
}

// stsPolicy is a cached MTA-STS policy (RFC 8461 §5.1).
type stsPolicy struct {
	id      string
	p       *mtasts.Policy
	fetched time.Time
	expires time.Time // fetched + max_age
}

func (s *stsPolicy) evidence() *STSEvidence {
	e := &STSEvidence{ID: s.id, Mode: string(s.p.Mode), MX: slices.Clone(s.p.MX), MaxAge: s.p.MaxAge,
		Fetched: s.fetched, Expires: s.expires}
	if s.p.Mode == mtasts.ModeTesting {
		q := *s.p
		q.Mode = mtasts.ModeEnforce
		e.Answer = q.PostfixPolicy()
	} else {
		e.Answer = s.p.PostfixPolicy()
	}
	return e
}

// resolution gathers the evidence for one destination.
type resolution struct {
	r      *Resolver
	d      string
	now    time.Time
	next   time.Time // earliest expiry of anything used
	failed bool      // a lookup or fetch failed: retry soon
	ev     Evidence
}

func (x *resolution) note(format string, args ...any) {
	x.ev.Notes = append(x.ev.Notes, fmt.Sprintf(format, args...))
}

func (x *resolution) until(t time.Time) {
	if !t.IsZero() && t.Before(x.next) {
		x.next = t
	}
}

func (x *resolution) lookup(ctx context.Context, name string, qtype uint16) (ans answer, err error) {
	a, exp, err := x.r.dns.lookup(ctx, name, qtype)
	if err != nil {
		x.failed = true
		return answer{}, err
	}
	x.until(exp)
	return answer{a.Records, a.AD, a.NXDomain}, nil
}

// answer is the part of a DNS answer resolution uses.
type answer struct {
	records  []dns.RR
	ad       bool
	nxdomain bool
}

// resolve determines the published answer for domain d. prev is what was
// known before (nil on first contact); force refetches the MTA-STS policy
// even when its id is unchanged (proactive refresh).
func (r *Resolver) resolve(ctx context.Context, d string, prev *state, force bool) *state {
	now := r.clock.Now()
	x := &resolution{r: r, d: d, now: now, next: now.Add(maxTTL)}
	x.ev.ADTrusted = r.trustAD
	st := &state{result: Result{Domain: d, Source: SourceNone, ResolvedAt: now}}

	hosts, mxAD := x.mxHosts(ctx)
	x.ev.MXAuthenticated = mxAD
	level := x.dane(ctx, hosts, mxAD)
	var cached *stsPolicy
	if prev != nil {
		cached = prev.policy
	}
	if level != "" {
		st.result.Source, st.result.Policy = SourceDANE, level
		st.policy = cached
		if cached != nil && now.Before(cached.expires) {
			x.ev.MTASTS = cached.evidence()
		}
		x.note("MTA-STS not consulted: DANE takes precedence (RFC 8461 §2)")
	} else if r.noMTASTS {
		x.note("MTA-STS is turned off (sources)")
	} else {
		st.policy = x.mtasts(ctx, cached, force)
		if st.policy != nil {
			x.ev.MTASTS = st.policy.evidence()
			x.matchMX(hosts, st.policy.p)
			if ans := st.policy.p.PostfixPolicy(); ans != "" {
				if pp, err := policyd.ParsePolicy(ans); err != nil {
					x.note("MTA-STS answer %q refused: %v", ans, err)
				} else {
					st.result.Source, st.result.Policy = SourceMTASTS, pp.String()
				}
			} else {
				x.note("MTA-STS policy id %s has mode %s: senders do not enforce it (RFC 8461 §5), so the default applies", st.policy.id, st.policy.p.Mode)
			}
		}
	}
	st.result.Evidence = x.ev

	refresh := earliest(latest(x.next, now.Add(minRefresh)), now.Add(maxTTL))
	if x.failed {
		refresh = earliest(refresh, latest(now.Add(retryDelay), now.Add(minRefresh)))
		// A DANE answer outlives a failed refresh for a while: the
		// destination asked for it, and a resolver hiccup is no reason to
		// drop to a weaker answer (an MTA-STS policy is kept by its own
		// cache rule above).
		if prev != nil && prev.result.Source == SourceDANE && st.result.Source != SourceDANE &&
			now.Before(prev.result.ResolvedAt.Add(maxStale)) {
			kept := prev.result
			kept.Evidence.Notes = append(slices.Clone(kept.Evidence.Notes),
				fmt.Sprintf("the refresh at %s failed (%s); the DANE answer of %s is kept until %s",
					now.UTC().Format(time.RFC3339), strings.Join(x.ev.Notes, "; "),
					kept.ResolvedAt.UTC().Format(time.RFC3339), kept.ResolvedAt.Add(maxStale).UTC().Format(time.RFC3339)))
			st.result = kept
		}
	}
	st.refreshAt = refresh
	st.failed = x.failed
	st.setTLSRPT(d)
	return st
}

// mxHosts looks up the MX hosts (discover.ParseMX: RFC 5321 §5.1, the
// implicit MX when there are none; RFC 7505, a null MX means no mail) and
// whether the MX answer was validated.
func (x *resolution) mxHosts(ctx context.Context) ([]discover.MXHost, bool) {
	a, err := x.lookup(ctx, x.d, dns.TypeMX)
	if err != nil {
		x.note("MX lookup failed: %v", err)
		return nil, false
	}
	if a.nxdomain {
		x.note("%s does not exist (NXDOMAIN)", x.d)
		return nil, a.ad
	}
	set := discover.ParseMX(x.d, a.records)
	if set.Null {
		x.note("%s publishes a null MX (RFC 7505): it accepts no mail", x.d)
		return nil, a.ad
	}
	hosts := set.Hosts
	if len(hosts) > maxMX {
		x.note("%d MX hosts; only the first %d were examined", len(hosts), maxMX)
		hosts = hosts[:maxMX]
	}
	return hosts, a.ad
}

// dane examines the MX hosts' TLSA records (RFC 7672 §2.2) and returns
// "dane-only" when every host has usable, validated records, "dane" when
// some have, or "" when DANE does not apply.
func (x *resolution) dane(ctx context.Context, hosts []discover.MXHost, mxAD bool) string {
	switch {
	case len(hosts) == 0:
		return ""
	case x.r.noDANE:
		x.note("DANE is turned off (sources)")
		return ""
	case !x.r.trustAD:
		x.note("DANE not used: the resolver %s is not on loopback, so its AD bit is not trusted (Postfix requires a local validating resolver)", x.r.resolverName)
		return ""
	case !mxAD:
		x.note("DANE does not apply: the MX records of %s are not DNSSEC-validated (RFC 7672 §2.2.1)", x.d)
		return ""
	}
	ev := make([]MXEvidence, len(hosts))
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed bool
	)
	next := x.next
	for i, h := range hosts {
		wg.Go(func() {
			// Each goroutine has its own resolution for the lookups, so
			// that expiries and failures are merged under the lock.
			sub := &resolution{r: x.r, d: x.d, now: x.now, next: next}
			ev[i] = sub.host(ctx, h.Name)
			mu.Lock()
			x.until(sub.next)
			failed = failed || sub.failed
			mu.Unlock()
		})
	}
	wg.Wait()
	x.failed = x.failed || failed
	x.ev.MX = ev
	usable := 0
	for _, m := range ev {
		if m.Usable {
			usable++
		}
	}
	switch {
	case usable == len(hosts):
		return "dane-only"
	case usable > 0:
		x.note("DANE: %d of %d MX hosts have usable TLSA records; Postfix uses DANE for those and opportunistic TLS for the others", usable, len(hosts))
		return "dane"
	}
	x.note("DANE does not apply: no MX host has DNSSEC-validated usable TLSA records")
	return ""
}

// host looks up one MX host's addresses and TLSA records.
func (x *resolution) host(ctx context.Context, host string) MXEvidence {
	m := MXEvidence{Host: host}
	var errs []string
	t, err := x.lookup(ctx, "_25._tcp."+host, dns.TypeTLSA)
	if err != nil {
		errs = append(errs, err.Error())
	}
	known := false
	for _, rr := range t.records {
		r, ok := rr.(*dns.TLSA)
		if !ok {
			continue
		}
		m.TLSA = append(m.TLSA, fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, strings.ToLower(r.Certificate)))
		// RFC 7672 §3.1.3: SMTP clients use only DANE-TA(2) and DANE-EE(3).
		known = known || (r.Usage == 2 || r.Usage == 3) && r.Selector <= 1 && r.MatchingType <= 2
	}
	addrAD := true
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, err := x.lookup(ctx, host, qt)
		if err != nil {
			errs = append(errs, err.Error())
			addrAD = false
			continue
		}
		addrAD = addrAD && a.ad
	}
	m.Authenticated = err == nil && t.ad && addrAD
	m.Usable = m.Authenticated && known
	m.Error = strings.Join(errs, "; ")
	return m
}

// mtasts applies the RFC 8461 cache rules and returns the policy in force,
// or nil.
func (x *resolution) mtasts(ctx context.Context, cached *stsPolicy, force bool) *stsPolicy {
	if cached != nil && !x.now.Before(cached.expires) {
		x.note("the cached MTA-STS policy id %s expired at %s", cached.id, cached.expires.UTC().Format(time.RFC3339))
		cached = nil
	}
	kept := func(why string) *stsPolicy {
		if cached == nil {
			return nil
		}
		x.note("%s; the cached policy id %s is used until it expires at %s (RFC 8461 §5.1)", why, cached.id, cached.expires.UTC().Format(time.RFC3339))
		return cached
	}
	a, err := x.lookup(ctx, "_mta-sts."+x.d, dns.TypeTXT)
	if err != nil {
		x.note("MTA-STS TXT lookup failed: %v", err)
		return kept("the TXT lookup failed")
	}
	var txts []string
	for _, rr := range a.records {
		if t, ok := rr.(*dns.TXT); ok {
			txts = append(txts, strings.Join(t.Txt, ""))
		}
	}
	txt, selErr := mtasts.SelectRecord(txts, "v=STSv1")
	var id string
	switch {
	case txt == "":
		if cached == nil {
			x.note("no MTA-STS: %s publishes no _mta-sts TXT record", x.d)
		}
		return kept("the _mta-sts TXT record is gone")
	case selErr != nil:
		x.note("MTA-STS TXT record unusable: %v", selErr)
		return kept("the _mta-sts TXT record is unusable")
	default:
		rec, err := mtasts.ParseRecord(txt)
		if err != nil {
			x.note("MTA-STS TXT record unusable: %v", err)
			return kept("the _mta-sts TXT record is unusable")
		}
		id = rec.ID
	}
	if cached != nil && cached.id == id && !force {
		return cached
	}
	p, err := x.r.fetch(ctx, x.d)
	if err != nil {
		x.failed = true
		x.ev.STSFetchFailure = &STSFetchFailure{Time: x.now, ResultType: string(tlsrpt.STSFetchResult(err)), Error: err.Error()}
		x.note("MTA-STS policy fetch failed: %v", err)
		return kept("the policy fetch failed")
	}
	sp := &stsPolicy{id: id, p: p, fetched: x.now, expires: x.now.Add(time.Duration(p.MaxAge) * time.Second)}
	x.until(sp.expires)
	return sp
}

// matchMX notes the MX hosts that match no mx pattern of the policy: Postfix
// defers mail routed to them under the secure answer (RFC 8461 §4.1).
func (x *resolution) matchMX(hosts []discover.MXHost, p *mtasts.Policy) {
	if p.Mode == mtasts.ModeNone {
		return
	}
	byHost := map[string]*MXEvidence{}
	for i := range x.ev.MX {
		byHost[x.ev.MX[i].Host] = &x.ev.MX[i]
	}
	for _, h := range hosts {
		ok := p.MatchMX(h.Name)
		m := byHost[h.Name]
		if m == nil {
			x.ev.MX = append(x.ev.MX, MXEvidence{Host: h.Name})
			m = &x.ev.MX[len(x.ev.MX)-1]
		}
		m.STSMatch = &ok
		if !ok {
			x.note("MX %s matches no MTA-STS mx pattern (%s): under mode %s mail routed to it is deferred", h.Name, strings.Join(p.MX, ", "), p.Mode)
		}
	}
}

// fetch downloads the policy of d from mta-sts.<d>, at the address our
// resolver returns for it (RFC 8461 §3.3).
func (r *Resolver) fetch(ctx context.Context, d string) (*mtasts.Policy, error) {
	f := r.fetcher
	if f.DialContext == nil {
		f.DialContext = r.dialResolved
	}
	return f.Fetch(ctx, d)
}

// dialResolved connects to addr's host at the addresses our resolver
// returns, in turn.
func (r *Resolver) dialResolved(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []string
	var errs []error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		a, _, err := r.dns.lookup(ctx, host, t)
		if err != nil {
			errs = append(errs, err)
			continue
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
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("%s has no A or AAAA records", host)
	}
	for _, ip := range ips {
		conn, err := r.dial(ctx, network, net.JoinHostPort(ip, port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
