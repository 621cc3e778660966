package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/policyd"
)

const (
	alertsFile     = "../contrib/prometheus/mailtls-alerts.yml"
	alertsTestFile = "../contrib/prometheus/mailtls-alerts_test.yml"
	dashboardFile  = "../contrib/grafana/mailtls-dashboard.json"
)

// promtool runs promtool (Debian package prometheus, installed by .ci/deps).
func promtool(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatalf("promtool not found: apt-get install prometheus (or run .ci/deps)")
	}
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// exported returns every metric name a `mailtls run` exports, with the
// series names of histograms, plus "up" (Prometheus's own).
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := New(Options{Daemon: true, Follower: true})
	m.Lookups.ObserveLookup(policyd.ProtoSocketmap, policyd.OriginOverride, policyd.OutcomeOK, time.Microsecond)
	yes := true
	m.Deliveries.Add(&delivery.Delivery{Status: "sent", TLS: &yes, TLSTrust: "verified", TLSProtocol: "TLSv1.3", Domain: "a.example"})
	log := filepath.Join(t.TempDir(), "mail.log")
	os.WriteFile(log, []byte("x\n"), 0o644)
	fi, _ := os.Stat(log)
	cp := logparse.Checkpoint{Path: log}
	cp.Dev, cp.Ino = fileID(fi)
	m.Follower.Restored(cp, logparse.Stats{})
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{"up": true}
	for _, f := range fams {
		names[f.GetName()] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+s] = true
			}
		}
	}
	if !names["mailtls_follower_lag_bytes"] {
		t.Fatal("the lag gauge is not exported")
	}
	return names
}

var metricRE = regexp.MustCompile(`\b(mailtls_[a-z0-9_]+|process_[a-z0-9_]+|go_[a-z0-9_]+|up)\b`)

// checkNames fails for every metric name in expr that mailtls does not
// export, and if expr names none.
func checkNames(t *testing.T, where, expr string, names map[string]bool) {
	t.Helper()
	found := metricRE.FindAllString(expr, -1)
	if len(found) == 0 {
		t.Errorf("%s: %q names no mailtls metric", where, expr)
	}
	for _, n := range found {
		if !names[n] {
			t.Errorf("%s: %q uses %s, which mailtls does not export", where, expr, n)
		}
	}
}

// TestAlertRules: the alert rules load (promtool check rules), their unit
// tests pass (promtool test rules), and they use only exported metrics.
func TestAlertRules(t *testing.T) {
	promtool(t, "check", "rules", alertsFile)
	promtool(t, "test", "rules", alertsTestFile)
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	names := exported(t)
	for _, n := range metricRE.FindAllString(string(b), -1) {
		if !names[n] {
			t.Errorf("%s uses %s, which mailtls does not export", alertsFile, n)
		}
	}
}

// TestDashboard: the Grafana dashboard parses, every panel has a query,
// every query uses only exported metrics, and every query is valid PromQL
// (promtool check rules on a rule file made of the panel queries).
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: no title or no panels", dashboardFile)
	}
	names := exported(t)
	// Grafana's variables, as Grafana would expand them.
	expand := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".+")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for j, tg := range p.Targets {
			e := expand.Replace(tg.Expr)
			checkNames(t, fmt.Sprintf("panel %q", p.Title), e, names)
			q, _ := json.Marshal(e) // a JSON string is a YAML string
			fmt.Fprintf(&rules, "      - record: dashboard:panel%d_%d\n        expr: %s\n", i, j, q)
		}
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", f)
}
