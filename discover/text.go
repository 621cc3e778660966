package discover

import (
	"fmt"
	"io"
	"strings"

	"github.com/mailtls/mailtls/policyd"
)

// Result is `mailtls check --format json`: the report plus our history
// and the override currently in force.
type Result struct {
	*Report
	CurrentOverride *string  `json:"current_override"`
	History         *History `json:"history"`
	HistoryError    string   `json:"history_error,omitempty"`
	Applied         bool     `json:"applied"`
}

// TableFunc renders a table (the caller's one output helper) with its
// first column right-aligned.
type TableFunc func(w io.Writer, header []string, rows [][]string) error

// WriteText renders res for a terminal; history is the line that says
// what our records hold (the caller formats counts and times).
func WriteText(w io.Writer, res Result, history string, table TableFunc) error {
	r := res.Report
	fmt.Fprintf(w, "Domain    %s  (checked in %.1fs)\n", r.Domain, float64(r.DurationMS)/1000)
	switch {
	case r.NullMX:
		fmt.Fprintln(w, "MX        null MX (\"MX 0 .\"): the domain accepts no mail")
	case r.ImplicitMX:
		fmt.Fprintln(w, "MX        none; the domain's own address is the implicit MX")
	case len(r.MX) == 0:
		fmt.Fprintln(w, "MX        none found")
	default:
		fmt.Fprintf(w, "MX        %d host(s), DNSSEC-validated: %s\n", len(r.MX), yesNo(r.MXDNSSEC))
	}
	for _, msg := range r.Errors {
		fmt.Fprintf(w, "          %s\n", msg)
	}
	if r.ResolverNote != "" {
		fmt.Fprintf(w, "DNS       %s\n", r.ResolverNote)
	}
	if len(r.MX) > 0 {
		fmt.Fprintln(w)
		rows, problems := r.mxRows()
		if err := table(w, []string{"PREF", "MX", "ADDRESS", "STARTTLS", "TLS", "CERTIFICATE", "DANE", "MTA-STS"}, rows); err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintf(w, "  ! %s\n", p)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "MTA-STS   %s\n", r.MTASTS.summary())
	fmt.Fprintf(w, "TLSRPT    %s\n", r.TLSRPT.summary())
	fmt.Fprintf(w, "History   %s\n", history)
	cur := "none (the default answer applies)"
	if res.CurrentOverride != nil {
		cur = *res.CurrentOverride
	}
	if res.HistoryError == "" {
		fmt.Fprintf(w, "Override  %s\n", cur)
	}
	fmt.Fprintln(w)
	rec := r.Recommendation
	if rec.Level == "" {
		fmt.Fprintln(w, "Recommendation: none")
	} else {
		fmt.Fprintf(w, "Recommendation: %s\n", rec.Policy)
	}
	for _, reason := range rec.Reasons {
		fmt.Fprintf(w, "  - %s\n", reason)
	}
	return nil
}

// mxRows are the cells of the MX table, and the problems found, one line
// each.
func (r *Report) mxRows() (rows [][]string, problems []string) {
	for _, m := range r.MX {
		p := m.Probe
		addr, starttls, tlsDesc, cert := "-", "-", "-", "-"
		if p.Address != "" {
			addr = p.Address
		}
		if p.Connected && p.FailedStep != StepGreeting && p.FailedStep != StepEHLO {
			starttls = yesNo(p.STARTTLS)
		}
		if p.TLS != nil {
			tlsDesc = p.TLS.Version
			cert = p.TLS.summary()
		}
		rows = append(rows, []string{fmt.Sprint(m.Preference), m.Host, addr, starttls, tlsDesc, cert, m.daneCell(), m.mtastsCell()})
		problems = append(problems, m.problems()...)
	}
	return rows, problems
}

func (m MXReport) daneCell() string {
	if len(m.TLSA) == 0 {
		return "-"
	}
	dane := fmt.Sprintf("%d TLSA", len(m.TLSA))
	if !m.TLSADNSSEC {
		dane += ", unsigned"
	} else if m.DANEMatch {
		dane += ", match"
	} else if m.Probe.TLS != nil {
		dane += ", no match"
	}
	return dane
}

func (m MXReport) mtastsCell() string {
	switch {
	case m.MTASTSMatch == nil:
		return "-"
	case !*m.MTASTSMatch:
		return "NOT listed"
	}
	return "listed"
}

func (m MXReport) problems() []string {
	var out []string
	p := m.Probe
	if m.AddressError != "" {
		out = append(out, fmt.Sprintf("%s: %s", m.Host, m.AddressError))
	}
	switch {
	case p.FailedStep == StepAddress:
		out = append(out, fmt.Sprintf("%s: %s (--allow-private probes it)", m.Host, p.Error))
	case len(m.NotProbed) > 0:
		out = append(out, fmt.Sprintf("%s: not probed at %s: not public (--allow-private probes them)", m.Host, strings.Join(m.NotProbed, ", ")))
	}
	if p.Error != "" && p.FailedStep != StepAddress {
		out = append(out, fmt.Sprintf("%s: %s: %s", m.Host, p.FailedStep, p.Error))
	}
	if p.TLS != nil && p.TLS.VerifyError != "" {
		out = append(out, fmt.Sprintf("%s: certificate: %s", m.Host, p.TLS.VerifyError))
	}
	if m.TLSAError != "" {
		out = append(out, fmt.Sprintf("%s: TLSA: %s", m.Host, m.TLSAError))
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (t *TLSResult) summary() string {
	var parts []string
	switch {
	case t.ChainVerified:
		parts = append(parts, "verified")
	case t.Expired:
		parts = append(parts, "expired")
	case t.SelfSigned:
		parts = append(parts, "self-signed")
	default:
		parts = append(parts, "untrusted")
	}
	if t.NameMatch {
		parts = append(parts, "name ok")
	} else {
		parts = append(parts, "name mismatch")
	}
	parts = append(parts, "until "+t.NotAfter.Format("2006-01-02"))
	return strings.Join(parts, ", ")
}

func (m *MTASTSInfo) summary() string {
	switch {
	case m == nil:
		return "none"
	case m.RecordError != "":
		return "record unusable: " + m.RecordError
	case m.PolicyError != "":
		return "policy unusable: " + m.PolicyError
	case m.Policy == nil:
		return "none"
	}
	p := m.Policy
	s := fmt.Sprintf("mode %s, max_age %d, id %s", p.Mode, p.MaxAge, m.ID)
	if len(p.MX) > 0 {
		s += ", mx " + strings.Join(p.MX, " ")
	}
	return s
}

func (t *TLSRPTInfo) summary() string {
	switch {
	case t == nil:
		return "none"
	case t.Error != "":
		return "unusable: " + t.Error
	}
	return "reports to " + strings.Join(t.RUA, ", ")
}

// Apply is what `check --apply` does with a recommendation.
type Apply struct {
	Set     bool           // set Policy as the override
	Policy  policyd.Policy // the recommended policy, parsed
	Lowered bool           // Policy lowers the current override (set only with force)
}

// Apply decides whether the recommendation becomes the override for key,
// whose current policy is cur (nil: none). may is the default answer and
// no recommendation means nothing to force: both leave the overrides
// alone. A current override is replaced only by a policy that does not
// lower it (policyd.Lowers), unless force.
func (rec Recommendation) Apply(key string, cur *string, force bool) (Apply, error) {
	if rec.Level == "" || rec.Level == "may" || cur != nil && *cur == rec.Policy {
		return Apply{}, nil
	}
	p, err := policyd.ParsePolicy(rec.Policy)
	if err != nil {
		return Apply{}, fmt.Errorf("recommended policy %q is not valid, not applied: %w", rec.Policy, err)
	}
	a := Apply{Set: true, Policy: p, Lowered: lowers(cur, p)}
	if a.Lowered && !force {
		return Apply{Lowered: true}, fmt.Errorf("not applied: %s could weaken TLS for %s: the override is %s (to replace it: --force, or mailtls policy set %s %s)",
			p, key, *cur, key, p)
	}
	return a, nil
}

// lowers reports whether p would lower the current override cur. A current
// value that does not parse (written by another tool) is not known to be
// weaker, so it counts as stronger.
func lowers(cur *string, p policyd.Policy) bool {
	if cur == nil {
		return false
	}
	old, err := policyd.ParsePolicy(*cur)
	return err != nil || policyd.Lowers(old, p)
}

// Advice is the closing line of the text report for key: what --apply
// did (tried: it was given; lowered: it needed --force), or what it
// would do. "" when there is nothing to say.
func (res Result) Advice(key string, tried, lowered bool) string {
	rec := res.Recommendation
	cur := res.CurrentOverride
	switch {
	case res.Applied && cur == nil:
		return fmt.Sprintf("Applied: override %s -> %s", key, rec.Policy)
	case res.Applied:
		how := ""
		if lowered {
			how = " (lowered: --force)"
		}
		return fmt.Sprintf("Applied: override %s %s -> %s%s", key, *cur, rec.Policy, how)
	case tried:
		return "Nothing applied: " + notApplied(rec, cur)
	case rec.Level != "" && rec.Level != "may":
		if p, err := policyd.ParsePolicy(rec.Policy); err == nil && lowers(cur, p) {
			return fmt.Sprintf("The override %s stays: %s could weaken TLS (re-run with --apply --force to replace it anyway)", *cur, p)
		} else if cur == nil || *cur != p.String() {
			return fmt.Sprintf("To apply: mailtls policy set %s %s   (or re-run with --apply)", key, rec.Policy)
		}
	}
	return ""
}

func notApplied(rec Recommendation, cur *string) string {
	switch {
	case rec.Level == "":
		return "there is no recommendation for this domain"
	case rec.Level == "may":
		return "may is the default answer, so no override is needed (remove one with `mailtls policy rm`)"
	case cur != nil && *cur == rec.Policy:
		return "the override is already " + rec.Policy
	}
	return ""
}
