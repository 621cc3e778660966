//go:build linux

package e2e

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// zoneServer is an in-process DNS server (the one fake here: there is no
// remote DNS) that answers MX and A for the given names.
func zoneServer(t *testing.T, a map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
		ip, ok := a[strings.TrimPrefix(name, "mx.")]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeMX && !strings.HasPrefix(name, "mx."):
			m.Answer = append(m.Answer, &dns.MX{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 60}, Preference: 10, Mx: "mx." + name + "."})
		case q.Qtype == dns.TypeA && strings.HasPrefix(name, "mx."):
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestCheckProbesRealReceivers runs `mailtls check` against the harness's
// real Postfix receivers: the STARTTLS one must get encrypt or better, the
// plaintext one may.
func TestCheckProbesRealReceivers(t *testing.T) {
	t.Parallel()
	pf := StartPostfix(t, Config{})
	resolver := zoneServer(t, map[string]string{
		"tls.test":   pf.Addr(ReceiverTLS),
		"plain.test": pf.Addr(ReceiverPlain),
	})
	bin := mailtlsBin(t)
	db := t.TempDir() + "/check.db"
	for domain, ok := range map[string]func(string) bool{
		"tls.test": func(l string) bool {
			return l == "encrypt" || l == "verify" || l == "secure" || l == "dane" || l == "dane-only"
		},
		"plain.test": func(l string) bool { return l == "may" },
	} {
		out, err := exec.Command(bin, "check", domain, "--allow-private", "--resolver", resolver, "--timeout", "20s", "--format", "json", "--db", db).Output()
		if err != nil {
			t.Fatalf("mailtls check %s: %v\n%s", domain, err, out)
		}
		var rep struct {
			Recommendation struct {
				Level   string   `json:"level"`
				Policy  string   `json:"policy"`
				Reasons []string `json:"reasons"`
			} `json:"recommendation"`
		}
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("check %s: %v\n%s", domain, err, out)
		}
		if !ok(rep.Recommendation.Level) {
			t.Errorf("check %s recommends %q (%v)", domain, rep.Recommendation.Level, rep.Recommendation.Reasons)
		}
	}
}
