package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics returns the samples of /metrics at addr as
// "name{labels}" -> value.
func scrapeMetrics(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if i < 0 || err != nil {
			return nil, fmt.Errorf("unparseable sample %q", l)
		}
		out[l[:i]] = v
	}
	return out, sc.Err()
}

// sum adds the samples of a metric whose labels contain every one of
// labels (each `name="value"`).
func sum(ms map[string]float64, name string, labels ...string) float64 {
	var t float64
next:
	for k, v := range ms {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(k, l) {
				continue next
			}
		}
		t += v
	}
	return t
}

// checkMetrics: the counters of the running mailtls equal what the store
// reports for the same deliveries (taken between two identical scrapes,
// as Postfix keeps retrying deferred mail), lookups were answered from
// overrides and the default, and no plaintext went to a forced
// destination: Postfix used the map.
func checkMetrics(t *testing.T, m *mailtlsRun, web, via string) {
	t.Helper()
	var got, want map[string]float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		before, err := scrapeMetrics(web)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Deliveries, Encrypted, Plaintext, Unknown, Fallback, Deferred, Bounced float64
			TLSDeferred                                                            float64 `json:"tls_deferred"`
		}
		if err := json.Unmarshal([]byte(m.cli("report", "--format", "json", "--since", "1h")), &rep); err != nil {
			t.Fatal(err)
		}
		after, err := scrapeMetrics(web)
		if err != nil {
			t.Fatal(err)
		}
		d := `status="sent"`
		got = map[string]float64{
			"deliveries": sum(after, "mailtls_deliveries_total", d), "encrypted": sum(after, "mailtls_deliveries_total", d, `tls="encrypted"`),
			"plaintext": sum(after, "mailtls_deliveries_total", d, `tls="plaintext"`), "unknown": sum(after, "mailtls_deliveries_total", d, `tls="unknown"`),
			"fallback": sum(after, "mailtls_fallbacks_total"), "deferred": sum(after, "mailtls_deliveries_total", `status="deferred"`),
			"tls_deferred": sum(after, "mailtls_tls_deferrals_total"), "bounced": sum(after, "mailtls_deliveries_total", `status="bounced"`),
		}
		want = map[string]float64{"deliveries": rep.Deliveries, "encrypted": rep.Encrypted, "plaintext": rep.Plaintext, "unknown": rep.Unknown,
			"fallback": rep.Fallback, "deferred": rep.Deferred, "tls_deferred": rep.TLSDeferred, "bounced": rep.Bounced}
		stable := sum(before, "mailtls_deliveries_total") == sum(after, "mailtls_deliveries_total")
		if stable && fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics differs from report --format json:\nmetrics %v\nreport  %v", got, want)
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	ms, err := scrapeMetrics(web)
	if err != nil {
		t.Fatal(err)
	}
	proto := `proto="socketmap"`
	if via == "tcp" {
		proto = `proto="tcp_table"`
	}
	if n := sum(ms, "mailtls_lookups_total", proto, `source="override"`, `result="ok"`); n < 1 {
		t.Errorf("no lookup answered from an override over %s: %v", proto, n)
	}
	if n := sum(ms, "mailtls_lookups_total", proto, `source="default"`, `result="ok"`); n < 1 {
		t.Errorf("no lookup answered by the default over %s: %v", proto, n)
	}
	if n := sum(ms, "mailtls_plaintext_to_forced_total"); n != 0 {
		t.Errorf("plaintext to a forced destination: %v, but Postfix uses the map", n)
	}
	if n := sum(ms, "mailtls_overrides"); n != 3 {
		t.Errorf("mailtls_overrides = %v, want 3 (plain.test, .wild.test, tls1.test)", n)
	}
}
