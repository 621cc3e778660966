package policyd

import (
	"errors"
	"strings"
	"testing"
)

func TestTLSRPTFormat(t *testing.T) {
	sts := TLSRPTPolicy{Type: TLSRPTSTS, Domain: "example.com",
		Strings:        []string{"version: STSv1", "mode: enforce", "mx: mx1.example.com", "mx: *.example.net", "max_age: 86400"},
		MXHostPatterns: []string{"mx1.example.com", "*.example.net"}}
	got, err := sts.Format()
	want := "policy_type=sts policy_domain=example.com mx_host_pattern=mx1.example.com mx_host_pattern=*.example.net" +
		" { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: mx1.example.com }" +
		" { policy_string = mx: *.example.net } { policy_string = max_age: 86400 }"
	if err != nil || got != want {
		t.Errorf("sts: %q, %v\nwant %q", got, err, want)
	}
	tlsa := TLSRPTPolicy{Type: TLSRPTTLSA, Domain: "dane.example", Strings: []string{"3 1 1 0123abcd"}}
	if got, err := tlsa.Format(); err != nil || got != "policy_type=tlsa policy_domain=dane.example { policy_string = 3 1 1 0123abcd }" {
		t.Errorf("tlsa: %q, %v", got, err)
	}
	for name, p := range map[string]TLSRPTPolicy{
		"type":              {Type: "no-policy-found", Domain: "example.com"},
		"empty type":        {Domain: "example.com"},
		"domain space":      {Type: TLSRPTSTS, Domain: "example.com policy_type=tlsa"},
		"domain comma":      {Type: TLSRPTSTS, Domain: "example.com,x"},
		"domain upper":      {Type: TLSRPTSTS, Domain: "Example.com"},
		"domain empty":      {Type: TLSRPTSTS},
		"domain label":      {Type: TLSRPTSTS, Domain: "a..b"},
		"pattern space":     {Type: TLSRPTSTS, Domain: "example.com", MXHostPatterns: []string{"mx.example.com match=x"}},
		"pattern brace":     {Type: TLSRPTSTS, Domain: "example.com", MXHostPatterns: []string{"{mx}"}},
		"pattern deep *":    {Type: TLSRPTSTS, Domain: "example.com", MXHostPatterns: []string{"*.*.example.com"}},
		"pattern on tlsa":   {Type: TLSRPTTLSA, Domain: "example.com", MXHostPatterns: []string{"mx.example.com"}},
		"string close":      {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{"mode: enforce } policy_type=tlsa"}},
		"string open":       {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{"{ x"}},
		"string comma":      {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{"mx: a,b"}},
		"string newline":    {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{"mode: enforce\nx"}},
		"string tab":        {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{"mode:\tenforce"}},
		"string nul":        {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{"mode: \x00"}},
		"string non-ascii":  {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{"mx: é.example"}},
		"string empty":      {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{""}},
		"string edge space": {Type: TLSRPTSTS, Domain: "example.com", Strings: []string{" mode: enforce"}},
		"too many":          {Type: TLSRPTSTS, Domain: "example.com", Strings: make([]string, 101)},
	} {
		if got, err := p.Format(); !errors.Is(err, ErrTLSRPT) || got != "" {
			t.Errorf("%s: %q, %v: want ErrTLSRPT", name, got, err)
		}
	}
}

// FuzzTLSRPTFormat: whatever goes in, what Format lets out splits into
// Postfix attributes exactly as built: name=value words without commas,
// and brace groups that hold one policy_string each.
func FuzzTLSRPTFormat(f *testing.F) {
	for _, s := range [][3]string{
		{"example.com", "mode: enforce", "mx.example.com"}, {"example.com", "mode: enforce } x", "*.example.com"},
		{"a b", "x", "y"}, {"example.com", "a,b", "c,d"}, {"example.com", "\n", "\x00"}, {"é", "{", "}"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, domain, str, pattern string) {
		p := TLSRPTPolicy{Type: TLSRPTSTS, Domain: domain, Strings: []string{str, str}, MXHostPatterns: []string{pattern}}
		out, err := p.Format()
		if err != nil {
			if !errors.Is(err, ErrTLSRPT) || out != "" || strings.Contains(err.Error(), "\n") && !strings.ContainsAny(domain+str+pattern, "\n") {
				t.Fatalf("error %v, out %q", err, out)
			}
			return
		}
		if strings.ContainsAny(out, ",\t\r\n") {
			t.Fatalf("separator in %q", out)
		}
		var words, strs []string
		rest := out
		for rest != "" {
			rest = strings.TrimLeft(rest, " ")
			if strings.HasPrefix(rest, "{ ") {
				end := strings.Index(rest, " }")
				if end < 0 {
					t.Fatalf("unclosed brace in %q", out)
				}
				inner := rest[2:end]
				v, ok := strings.CutPrefix(inner, "policy_string = ")
				if !ok || strings.ContainsAny(v, "{}") {
					t.Fatalf("brace group %q in %q", inner, out)
				}
				strs = append(strs, v)
				rest = rest[end+2:]
				continue
			}
			w, r, _ := strings.Cut(rest, " ")
			words, rest = append(words, w), r
		}
		want := []string{"policy_type=sts", "policy_domain=" + domain, "mx_host_pattern=" + pattern}
		if strings.Join(words, "\x00") != strings.Join(want, "\x00") || len(strs) != 2 || strs[0] != str || strs[1] != str {
			t.Fatalf("%q splits into %q and %q", out, words, strs)
		}
	})
}

// TestServerTLSRPT: the TLSRPT attributes reach Postfix only on published
// answers, only when asked for (the map name tlspolicy-tlsrpt, or
// Server.TLSRPT on every listener); an override or the default never gets
// them, and the plain map name never does without Server.TLSRPT.
func TestServerTLSRPT(t *testing.T) {
	const attrs = "policy_type=sts policy_domain=gmail.example mx_host_pattern=*.gmail.example { policy_string = mode: enforce }"
	const sec = "secure match=.gmail.example servername=hostname"
	for _, all := range []bool{false, true} {
		srv := newTestServer(t, "may")
		srv.TLSRPT = all
		pub := &fakePublisher{
			answers: map[string][2]string{"gmail.example": {sec, "mta-sts"}, "example.com": {"dane-only", "dane"}},
			tlsrpt:  map[string]string{"gmail.example": attrs, "example.com": "policy_type=tlsa policy_domain=example.com"},
		}
		srv.Table.SetPublisher(pub)
		_, sm := listen(t, srv, "tcp", protoSocketmap)
		_, tt := listen(t, srv, "tcp", protoTCPTable)
		c, tc := dial(t, "tcp", sm), dial(t, "tcp", tt)
		plain := "OK " + sec
		tcp := "200 " + strings.ReplaceAll(sec, " ", "%20")
		if all {
			plain += " " + attrs
			tcp += "%20" + strings.ReplaceAll(attrs, " ", "%20")
		}
		for q, want := range map[string]string{
			"tlspolicy-tlsrpt gmail.example":   "OK " + sec + " " + attrs,
			"tlspolicy gmail.example":          plain,
			"tlspolicy-tlsrpt example.com":     "OK encrypt protocols=>=TLSv1.2", // the override wins, bare
			"tlspolicy-tlsrpt nothing.example": "OK may",                         // the default, bare
			"tlspolicy-tlsrpt [mx.example]:25": "OK may",
		} {
			if got := c.query(q); got != want {
				t.Errorf("TLSRPT %v: %s = %q, want %q", all, q, got, want)
			}
		}
		if got := c.query("tlspolicy-tlsrptx gmail.example"); !strings.HasPrefix(got, "PERM ") {
			t.Errorf("map name tlspolicy-tlsrptx: %q", got)
		}
		tc.send("get gmail.example\n")
		if got := tc.line(); got != tcp {
			t.Errorf("TLSRPT %v: tcp_table gmail.example = %q, want %q", all, got, tcp)
		}
	}
}
