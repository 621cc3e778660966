package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func answerRows(t *testing.T, s *Store, domain string) string {
	t.Helper()
	var out string
	if err := s.AnswerLog(context.Background(), domain, func(a AnswerChange) error {
		out += fmt.Sprintf("%s %s %q %s; ", a.At.Format(time.RFC3339), a.Source, a.Policy, a.PolicyID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAnswerLog: a row per change of answer, none for a repeat; a change
// logged at or before the latest row moves just after it; prune keeps the
// row still in force at the horizon and drops the ones superseded before
// it; bad input is refused.
func TestAnswerLog(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	day := func(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }
	s.now = func() time.Time { return day(10) }
	save := func(at time.Time, source, policy, id string) {
		t.Helper()
		if err := s.SavePublishedAnswer(ctx, "a.example", source, policy, id, []byte(`{}`), at, day(30)); err != nil {
			t.Fatal(err)
		}
	}
	const sec = "secure match=mx.a.example servername=hostname"
	save(day(1), "mta-sts", sec, "1")
	save(day(2), "mta-sts", sec, "1") // unchanged
	save(day(3), "none", "", "2")     // testing now
	save(day(5), "dane", "dane-only", "")
	save(day(4), "none", "", "") // resolved out of order: after the latest
	want := fmt.Sprintf("%s mta-sts %q 1; %s none \"\" 2; %s dane \"dane-only\" ; %s none \"\" ; ",
		day(1).Format(time.RFC3339), sec, day(3).Format(time.RFC3339), day(5).Format(time.RFC3339), day(5).Format(time.RFC3339))
	if got := answerRows(t, s, "a.example"); got != want {
		t.Fatalf("answer log\n got %s\nwant %s", got, want)
	}
	if rows := loadPublished(t, s); len(rows) != 1 || rows[0].domain != "a.example" {
		t.Errorf("the cache entry is saved with the log: %v", rows)
	}
	if err := s.SavePublishedAnswer(ctx, "b.example", "none", "", "id with space", nil, day(1), day(2)); err == nil {
		t.Error("a policy id with a space was accepted")
	}

	// Prune to day 4: day 3's answer was in force then, day 1's is gone.
	if _, err := s.Prune(ctx, day(4)); err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf("%s none \"\" 2; %s dane \"dane-only\" ; %s none \"\" ; ",
		day(3).Format(time.RFC3339), day(5).Format(time.RFC3339), day(5).Format(time.RFC3339))
	if got := answerRows(t, s, ""); got != want {
		t.Errorf("after prune\n got %s\nwant %s", got, want)
	}
}
