package discover

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/mtasts"
)

// plainTable renders rows as "cell|cell" lines, so that tests see exactly
// which cells WriteText hands the caller's table helper.
func plainTable(w io.Writer, header []string, rows [][]string) error {
	for _, r := range append([][]string{header}, rows...) {
		if _, err := io.WriteString(w, strings.Join(r, "|")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func TestWriteText(t *testing.T) {
	yes, no := true, false
	cur := "verify"
	res := Result{Report: &Report{
		Domain: "example.com", DurationMS: 1500, MXDNSSEC: true,
		MX: []MXReport{
			{Host: "mx1.example.com", Preference: 10, TLSA: []TLSARecord{{}}, TLSADNSSEC: true, DANEMatch: true, MTASTSMatch: &yes,
				Probe: Probe{Address: "192.0.2.1:25", Connected: true, STARTTLS: true,
					TLS: &TLSResult{Version: "TLSv1.3", ChainVerified: true, NameMatch: true, NotAfter: time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)}}},
			{Host: "mx2.example.com", Preference: 20, MTASTSMatch: &no, NotProbed: []string{"10.0.0.1 (private)"}},
		},
		MTASTS:         &MTASTSInfo{ID: "1", Policy: &mtasts.Policy{Mode: "enforce", MaxAge: 86400, MX: []string{"mx1.example.com"}}},
		Recommendation: Recommendation{Level: "dane", Policy: "dane", Reasons: []string{"TLSA records match"}},
	}, CurrentOverride: &cur}
	var b strings.Builder
	if err := WriteText(&b, res, "no deliveries", plainTable); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Domain    example.com  (checked in 1.5s)\n",
		"MX        2 host(s), DNSSEC-validated: yes\n",
		"PREF|MX|ADDRESS|STARTTLS|TLS|CERTIFICATE|DANE|MTA-STS\n",
		"10|mx1.example.com|192.0.2.1:25|yes|TLSv1.3|verified, name ok, until 2027-01-02|1 TLSA, match|listed\n",
		"20|mx2.example.com|-|-|-|-|-|NOT listed\n",
		"  ! mx2.example.com: not probed at 10.0.0.1 (private): not public (--allow-private probes them)\n",
		"MTA-STS   mode enforce, max_age 86400, id 1, mx mx1.example.com\n",
		"TLSRPT    none\n",
		"History   no deliveries\n",
		"Override  verify\n",
		"Recommendation: dane\n  - TLSA records match\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	res.HistoryError = "database locked"
	b.Reset()
	if err := WriteText(&b, res, "unavailable", plainTable); err != nil || strings.Contains(b.String(), "Override") {
		t.Errorf("with a history error the override line must go (it is not known): %v\n%s", err, b.String())
	}
}

// TestApply: may and no recommendation set nothing; a recommendation
// that lowers the current override is set only with force.
func TestApply(t *testing.T) {
	str := func(s string) *string { return &s }
	enc := Recommendation{Level: "encrypt", Policy: "encrypt"}
	for _, tt := range []struct {
		rec            Recommendation
		cur            *string
		force          bool
		set, low, fail bool
	}{
		{Recommendation{}, nil, false, false, false, false},
		{Recommendation{Level: "may", Policy: "may"}, str("verify"), false, false, false, false},
		{enc, str("encrypt"), false, false, false, false},
		{enc, nil, false, true, false, false},
		{enc, str("may"), false, true, false, false},
		{enc, str("verify"), false, false, true, true},
		{enc, str("verify"), true, true, true, false},
		{enc, str("not a policy"), false, false, true, true},
		{Recommendation{Level: "encrypt", Policy: "encrypt bogus=1"}, nil, false, false, false, true},
	} {
		a, err := tt.rec.Apply("example.com", tt.cur, tt.force)
		if a.Set != tt.set || a.Lowered != tt.low || (err != nil) != tt.fail {
			t.Errorf("Apply(%q, cur %v, force %v) = %+v, %v; want set %v lowered %v fail %v", tt.rec.Policy, tt.cur, tt.force, a, err, tt.set, tt.low, tt.fail)
		}
		if a.Set && a.Policy.String() != tt.rec.Policy {
			t.Errorf("Apply(%q) sets %q", tt.rec.Policy, a.Policy)
		}
	}
}

func TestAdvice(t *testing.T) {
	str := func(s string) *string { return &s }
	enc := Recommendation{Level: "encrypt", Policy: "encrypt"}
	for _, tt := range []struct {
		res            Result
		tried, lowered bool
		want           string
	}{
		{Result{Report: &Report{Recommendation: enc}, Applied: true}, true, false, "Applied: override k -> encrypt"},
		{Result{Report: &Report{Recommendation: enc}, Applied: true, CurrentOverride: str("verify")}, true, true, "Applied: override k verify -> encrypt (lowered: --force)"},
		{Result{Report: &Report{Recommendation: Recommendation{Level: "may", Policy: "may"}}}, true, false, "Nothing applied: may is the default answer"},
		{Result{Report: &Report{Recommendation: enc}, CurrentOverride: str("verify")}, false, false, "The override verify stays"},
		{Result{Report: &Report{Recommendation: enc}}, false, false, "To apply: mailtls policy set k encrypt"},
		{Result{Report: &Report{Recommendation: enc}, CurrentOverride: str("encrypt")}, false, false, ""},
		{Result{Report: &Report{}}, false, false, ""},
	} {
		got := tt.res.Advice("k", tt.tried, tt.lowered)
		if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
			t.Errorf("Advice(%+v, tried %v) = %q, want %q", tt.res, tt.tried, got, tt.want)
		}
	}
}
