package tlsrpt

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"
)

// fakeClaims records claims as the store does: a send once claimed is
// done, unless it failed and retry is allowed.
type fakeClaims struct {
	state   map[string]error // key -> the send's error (nil: sent)
	retries []bool
}

func (f *fakeClaims) ClaimTLSRPTSend(_ context.Context, domain, day, rua string, retry bool) (bool, error) {
	f.retries = append(f.retries, retry)
	err, ok := f.state[domain+" "+day+" "+rua]
	if ok && (err == nil || !retry) {
		return false, nil
	}
	return true, nil
}

func (f *fakeClaims) FinishTLSRPTSend(_ context.Context, domain, day, rua string, sendErr error) error {
	f.state[domain+" "+day+" "+rua] = sendErr
	return nil
}

type fakeMailer struct {
	to   []string
	fail map[string]bool
}

func (m *fakeMailer) Send(_ context.Context, from, to string, msg []byte) error {
	m.to = append(m.to, to)
	if m.fail[to] {
		return errors.New("sendmail: exit 75")
	}
	return nil
}

// TestSender: a domain without a record gets nothing, one with a broken
// record is skipped, the others get one send per rua; a failed day is
// retried while RetryFor allows, and only its failed sends.
func TestSender(t *testing.T) {
	claims := &fakeClaims{state: map[string]error{}}
	mailer := &fakeMailer{fail: map[string]bool{"bad@rua.example": true}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	domains := []string{"none.example", "broken.example", "dest.example"}
	var built []time.Time
	s := Sender{
		Deliverer: &Deliverer{Claims: claims, Mail: mailer, From: "tlsrpt@sender.example", Now: func() time.Time { return day }, Log: log},
		Build: func(_ context.Context, d time.Time) ([]Report, error) {
			built = append(built, d)
			var out []Report
			for _, dom := range domains {
				out = append(out, Build(Input{Organization: "O", Contact: "mailto:tlsrpt@sender.example", Domain: dom, Day: d,
					Policy: Policy{Type: PolicyNoPolicyFound, Domain: dom}, Deliveries: sampleDeliveries()}))
			}
			return out, nil
		},
		Lookup: func(_ context.Context, domain string) *Record {
			switch domain {
			case "broken.example":
				return &Record{Text: "v=TLSRPTv1; rua=ftp://x", Error: "discover: rua ftp://x: not mailto: or https:"}
			case "dest.example":
				return &Record{RUA: []string{"mailto:ok@rua.example", "mailto:bad@rua.example"}}
			}
			return nil
		},
		Log: log,
	}
	now := day.Add(26 * time.Hour) // the day after day, 02:00
	outs, failed, err := s.Send(context.Background(), day, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Outcome{
		{Domain: "broken.example", Day: "2026-11-30", Result: "skipped", Error: "rua ftp://x: not mailto: or https:"},
		{Domain: "dest.example", Day: "2026-11-30", RUA: "mailto:ok@rua.example", Result: "sent"},
		{Domain: "dest.example", Day: "2026-11-30", RUA: "mailto:bad@rua.example", Result: "failed", Error: "sendmail: exit 75"},
	}
	if failed != 1 || !reflect.DeepEqual(outs, want) {
		t.Fatalf("Send: %d failed, %+v\nwant 1 failed, %+v", failed, outs, want)
	}
	// The next day: day's failed send is retried, its sent one is not.
	mailer.fail = nil
	next := day.AddDate(0, 0, 1)
	outs, failed, err = s.Send(context.Background(), next, now.AddDate(0, 0, 1), []string{"2026-11-30"})
	if err != nil || failed != 0 {
		t.Fatalf("retry: %d failed, %v", failed, err)
	}
	if !reflect.DeepEqual(built, []time.Time{day, next, day}) {
		t.Errorf("built the days %v, want day, the next, then day again", built)
	}
	results := map[string]string{}
	for _, o := range outs {
		results[o.Day+" "+o.RUA] = o.Result
	}
	if results["2026-11-30 mailto:ok@rua.example"] != "done" || results["2026-11-30 mailto:bad@rua.example"] != "sent" {
		t.Errorf("retried day: %v, want the sent one done and the failed one sent", results)
	}
	// Past RetryFor, a failed day is built but its claims refuse a retry.
	claims.retries = nil
	if _, _, err := s.Send(context.Background(), next, day.AddDate(0, 0, 1).Add(RetryFor+time.Hour), []string{"2026-11-30"}); err != nil {
		t.Fatal(err)
	}
	if len(claims.retries) != 4 || !claims.retries[0] || claims.retries[2] || claims.retries[3] {
		t.Errorf("retry flags %v, want the next day's true and day's false", claims.retries)
	}
}

func TestRetrySpan(t *testing.T) {
	if s, u := RetrySpan(day.Add(5 * time.Hour)); s != "2026-11-26" || u != "2026-11-30" {
		t.Errorf("RetrySpan = %s, %s, want 2026-11-26, 2026-11-30", s, u)
	}
}
