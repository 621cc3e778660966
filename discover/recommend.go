package discover

import (
	"fmt"
	"strings"

	"github.com/mailtls/mailtls/mtasts"
)

// Recommendation is the strongest Postfix TLS security level that would
// have worked for every MX at the time of the check.
type Recommendation struct {
	// Level is a Postfix level (none may encrypt dane dane-only
	// fingerprint verify secure), or "" when no policy applies (null MX,
	// domain does not exist, MX lookup failed).
	Level string `json:"level"`
	// Policy is the full smtp_tls_policy_maps value, e.g.
	// "secure match=mx1.example.com:.example.net".
	Policy  string   `json:"policy"`
	Reasons []string `json:"reasons"`
}

// Recommend picks the level from a report. The ladder, strongest first:
//
//   - dane-only: the MX RRset, each host's addresses and its TLSA RRset are
//     DNSSEC-validated, each host has usable TLSA records (DANE-TA or
//     DANE-EE, RFC 7672 §3.1.3) and its certificate matches one.
//   - secure match=<mx patterns>: the domain has a valid MTA-STS policy in
//     enforce mode, every MX matches its mx patterns, and every
//     certificate chain validates and names its MX (RFC 8461 §4).
//   - verify: every certificate chain validates and names its MX.
//   - encrypt: every MX offers STARTTLS and completes a handshake.
//   - dane: some MX hosts have DNSSEC-validated TLSA records that their
//     certificates match, and no host with such records fails; the others
//     fall back to may.
//   - may: anything else.
//
// An MX that could not be reached counts against every level but may: we
// cannot tell what it supports. The reasons say why the level was chosen
// and what stopped each stronger one.
func Recommend(r *Report) Recommendation {
	rec := Recommendation{Reasons: []string{}}
	switch {
	case r.NullMX:
		rec.Reasons = append(rec.Reasons, fmt.Sprintf("%s publishes a null MX (RFC 7505): it accepts no mail, so no TLS policy applies", r.Domain))
		return rec
	case len(r.MX) == 0:
		msg := "no MX host found"
		if len(r.Errors) > 0 {
			msg = strings.Join(r.Errors, "; ")
		}
		rec.Reasons = append(rec.Reasons, msg+": no recommendation")
		return rec
	}
	noAddr := 0
	for _, m := range r.MX {
		if len(m.Addresses) == 0 {
			noAddr++
		}
	}
	if noAddr == len(r.MX) {
		var why []string
		for _, m := range r.MX {
			why = append(why, m.Host+": "+m.AddressError)
		}
		msg := fmt.Sprintf("no MX host of %s has an address (%s): no recommendation", r.Domain, strings.Join(why, "; "))
		if r.ImplicitMX {
			msg = fmt.Sprintf("%s has no MX record and no usable address of its own (%s): no recommendation", r.Domain, strings.Join(why, "; "))
		}
		rec.Reasons = append(rec.Reasons, msg)
		return rec
	}

	n := len(r.MX) - noAddr
	var hosts string
	if n == 1 {
		for _, mx := range r.MX {
			if len(mx.Addresses) > 0 {
				hosts = "the MX host " + mx.Host
			}
		}
	} else {
		hosts = fmt.Sprintf("all %d MX hosts", n)
	}
	ladder := []rung{
		{level: "dane-only", policy: "dane-only", blockers: daneOnlyBlockers(r),
			why: hosts + " published DNSSEC-validated TLSA records and presented a matching certificate; Postfix needs smtp_dns_support_level = dnssec and a validating resolver"},
		secureRung(r, hosts),
		{level: "verify", policy: "verify", blockers: verifyBlockers(r, "verify"),
			why: hosts + " offered STARTTLS with a certificate chain that validates and names the MX host; Postfix must trust the same roots (smtp_tls_CAfile or smtp_tls_CApath)"},
		{level: "encrypt", policy: "encrypt", blockers: encryptBlockers(r, "encrypt"),
			why: hosts + " offered STARTTLS and completed a TLS handshake"},
		{level: "dane", policy: "dane", blockers: daneBlockers(r),
			why: daneWhy(r)},
	}
	seen := map[string]bool{}
	var tail []string
	for _, g := range ladder {
		if len(g.blockers) == 0 {
			rec.Level, rec.Policy = g.level, g.policy
			rec.Reasons = append(append(rec.Reasons, g.why), tail...)
			for _, mx := range r.MX {
				if len(mx.Addresses) == 0 {
					rec.Reasons = append(rec.Reasons, fmt.Sprintf("%s has no address (%s): Postfix skips it whatever the level", mx.Host, mx.AddressError))
				}
			}
			return rec
		}
		for _, b := range g.blockers {
			if !seen[b] {
				seen[b] = true
				tail = append(tail, b)
			}
		}
	}
	for _, mx := range r.MX {
		if len(mx.Addresses) == 0 {
			tail = append(tail, fmt.Sprintf("%s has no address (%s): Postfix skips it whatever the level", mx.Host, mx.AddressError))
		}
	}
	rec.Level, rec.Policy = "may", "may"
	rec.Reasons = append(append(rec.Reasons, "opportunistic TLS: Postfix uses TLS where the receiver offers it and delivers in plaintext otherwise"), tail...)
	return rec
}

// rung is one level of the ladder: it is chosen when it has no blockers.
type rung struct {
	level, policy string
	blockers      []string
	why           string
}

// secureRung builds the MTA-STS rung; its policy needs the mx patterns.
func secureRung(r *Report, hosts string) (g rung) {
	g.level = "secure"
	m := r.MTASTS
	switch {
	case m == nil:
		g.blockers = []string{fmt.Sprintf("secure: %s publishes no MTA-STS record (_mta-sts.%s TXT), so there are no MX patterns to match", r.Domain, r.Domain)}
		return g
	case m.RecordError != "":
		g.blockers = []string{"secure: the MTA-STS TXT record is unusable: " + m.RecordError}
		return g
	case m.PolicyError != "" || m.Policy == nil:
		g.blockers = []string{"secure: the MTA-STS policy is unusable: " + m.PolicyError}
		return g
	case m.Policy.Mode != mtasts.ModeEnforce:
		g.blockers = []string{fmt.Sprintf("secure: the MTA-STS policy mode is %s, not enforce: the domain does not ask senders to insist on it yet", m.Policy.Mode)}
		return g
	}
	for _, mx := range r.MX {
		if len(mx.Addresses) > 0 && !m.Policy.MatchMX(mx.Host) {
			g.blockers = append(g.blockers, fmt.Sprintf("%s is not covered by the MTA-STS mx patterns (%s): secure would defer mail routed to it",
				mx.Host, strings.Join(m.Policy.MX, ", ")))
		}
	}
	g.blockers = append(g.blockers, verifyBlockers(r, "secure")...)
	g.policy = "secure match=" + m.Policy.PostfixMatch()
	g.why = hosts + " matched the MTA-STS policy (mode enforce) and presented a certificate that validates and names the MX host; Postfix must trust the same roots (smtp_tls_CAfile or smtp_tls_CApath)"
	return g
}

// encryptBlockers lists, per MX, why a mandatory-TLS level fails.
func encryptBlockers(r *Report, level string) []string {
	var out []string
	for _, mx := range r.MX {
		if b := tlsBlocker(mx, level); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// tlsBlocker says why TLS did not work with one MX, or "".
func tlsBlocker(mx MXReport, level string) string {
	p := mx.Probe
	switch {
	case p.TLS != nil || len(mx.Addresses) == 0:
		// Postfix skips a host without addresses at every level.
		return ""
	case p.FailedStep == StepAddress:
		return fmt.Sprintf("%s was %s: cannot tell whether %s would work", mx.Host, p.Error, level)
	case !p.Connected || p.FailedStep == StepGreeting || p.FailedStep == StepEHLO && !strings.HasPrefix(p.Error, "EHLO rejected"):
		return fmt.Sprintf("%s could not be probed (%s: %s): cannot tell whether %s would work; re-run when it answers", mx.Host, p.FailedStep, p.Error, level)
	case !p.STARTTLS:
		why := "does not offer STARTTLS"
		if p.FailedStep == StepEHLO {
			why = "rejected EHLO, so no STARTTLS (" + p.Error + ")"
		}
		return fmt.Sprintf("%s %s: %s would defer mail routed to it", mx.Host, why, level)
	default:
		return fmt.Sprintf("%s offers STARTTLS but TLS failed (%s): %s would defer mail routed to it", mx.Host, p.Error, level)
	}
}

// verifyBlockers lists why certificate verification would fail.
func verifyBlockers(r *Report, level string) []string {
	var out []string
	for _, mx := range r.MX {
		if b := tlsBlocker(mx, level); b != "" || mx.Probe.TLS == nil {
			if b != "" {
				out = append(out, b)
			}
			continue
		}
		t := mx.Probe.TLS
		if !t.ChainVerified {
			out = append(out, fmt.Sprintf("%s certificate does not validate (%s): %s would defer mail routed to it", mx.Host, t.VerifyError, level))
		}
		if !t.NameMatch {
			names := strings.Join(t.Names, ", ")
			if names == "" {
				names = "no names"
			}
			out = append(out, fmt.Sprintf("%s certificate is not valid for %s (it names %s): %s would defer mail routed to it", mx.Host, mx.Host, names, level))
		}
	}
	return out
}

// daneSecure reports whether DANE applies to an MX: the whole path from
// the MX RRset to the TLSA RRset is DNSSEC-validated and TLSA records exist
// (RFC 7672 §2.2).
func daneSecure(r *Report, mx MXReport) bool {
	return r.MXDNSSEC && mx.AddressesDNSSEC && mx.TLSAError == "" && mx.TLSADNSSEC && len(mx.TLSA) > 0
}

func hasUsable(recs []TLSARecord) bool {
	for _, t := range recs {
		if t.Usable {
			return true
		}
	}
	return false
}

// daneHostBlocker says why DANE fails for an MX with secure TLSA records.
func daneHostBlocker(mx MXReport, level string) string {
	if b := tlsBlocker(mx, level); b != "" || mx.Probe.TLS == nil {
		return b
	}
	if !hasUsable(mx.TLSA) {
		// Postfix treats unusable TLSA records as mandatory unauthenticated TLS.
		return ""
	}
	if !mx.DANEMatch {
		return fmt.Sprintf("%s certificate matches none of its TLSA records: %s would defer mail routed to it", mx.Host, level)
	}
	return ""
}

func daneOnlyBlockers(r *Report) []string {
	if !r.MXDNSSEC {
		return []string{fmt.Sprintf("dane-only: the MX records of %s are not DNSSEC-validated (the resolver did not set the AD bit), so DANE does not apply", r.Domain)}
	}
	any := false
	for _, mx := range r.MX {
		any = any || len(mx.TLSA) > 0
	}
	if !any {
		return []string{"dane-only: no MX host publishes TLSA records (_25._tcp.<mx>)"}
	}
	var out []string
	for _, mx := range r.MX {
		switch {
		case len(mx.Addresses) == 0:
		case mx.TLSAError != "":
			out = append(out, fmt.Sprintf("%s TLSA lookup failed (%s): dane-only would defer mail routed to it", mx.Host, mx.TLSAError))
		case len(mx.TLSA) == 0:
			out = append(out, fmt.Sprintf("%s has no TLSA records: dane-only would defer mail routed to it", mx.Host))
		case !mx.TLSADNSSEC || !mx.AddressesDNSSEC:
			out = append(out, fmt.Sprintf("%s TLSA or address records are not DNSSEC-validated: dane-only would defer mail routed to it", mx.Host))
		case !hasUsable(mx.TLSA):
			out = append(out, fmt.Sprintf("%s publishes only TLSA records that SMTP does not use (PKIX usages 0/1, RFC 7672 §3.1.3): dane-only would defer mail routed to it", mx.Host))
		default:
			if b := daneHostBlocker(mx, "dane-only"); b != "" {
				out = append(out, b)
			}
		}
	}
	return out
}

// daneWhy names the hosts that opportunistic DANE would authenticate.
func daneWhy(r *Report) string {
	var names []string
	for _, mx := range r.MX {
		if len(mx.Addresses) > 0 && daneSecure(r, mx) {
			names = append(names, mx.Host)
		}
	}
	return strings.Join(names, ", ") + " presented certificates matching DNSSEC-validated TLSA records, so dane authenticates them; " +
		"the other MX hosts get opportunistic TLS; Postfix needs smtp_dns_support_level = dnssec"
}

// daneBlockers: opportunistic DANE helps when some host is DANE-secure and
// none of the DANE-secure hosts would fail.
func daneBlockers(r *Report) []string {
	var out []string
	secure := 0
	for _, mx := range r.MX {
		if len(mx.Addresses) == 0 || !daneSecure(r, mx) {
			continue
		}
		secure++
		if b := daneHostBlocker(mx, "dane"); b != "" {
			out = append(out, b)
		}
	}
	if secure == 0 {
		return []string{"dane: no MX host has DNSSEC-validated TLSA records"}
	}
	return out
}
