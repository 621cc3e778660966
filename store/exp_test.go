package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestExpImport(t *testing.T) {
	ctx := context.Background()
	n, _ := strconv.Atoi(os.Getenv("QN"))
	if n == 0 {
		t.Skip()
	}
	bs, _ := strconv.Atoi(os.Getenv("QB"))
	g := newGenerator(n, 1)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ds := make([]Delivery, n)
	for i := range ds {
		ds[i] = g.delivery(i, start.Add(time.Duration(i)*350*time.Millisecond), 0.5)
		h := sha256.Sum256([]byte(ds[i].Key))
		ds[i].Key = hex.EncodeToString(h[:])
	}
	s, err := Open(ctx, filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, _ := s.writer()
	for _, q := range strings.Split(os.Getenv("QSQL"), ";") {
		if q != "" {
			if _, err := w.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
	}
	t0 := time.Now()
	c0 := cpuTime()
	for i := 0; i < n; i += bs {
		if _, err := s.CommitBatch(ctx, "x", ds[i:min(i+bs, n)], []byte("cp")); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("import %d rows batch %d: wall %v cpu %v", n, bs, time.Since(t0), cpuTime()-c0)
}
