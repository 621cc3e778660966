package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// GenerateDeliveries adds n synthetic deliveries spread evenly over the
// days days before the store's clock, for benchmarks and demos. The same
// seed gives the same deliveries (relative to the clock).
//
// The model: recipient domains follow a Zipf distribution (about n/100
// domains, the largest taking ~20% of the mail); each domain has one to
// three MX hosts with a fixed TLS profile (mostly Trusted/Untrusted TLS 1.3
// or 1.2, ~8% plaintext-only, ~3% with one plaintext MX, ~0.5% that lose
// TLS part-way through the period); ~94% of deliveries are sent, 4.5%
// deferred (some for TLS reasons), 1% bounced, 0.5% expired; ~1% have
// unknown TLS state. Keys are unique but, unlike real sha256 keys, start
// with a sequence number so that bulk filling appends to the key index.
//
// Rows go through the same insert path as AddDeliveries, in large
// transactions.
func GenerateDeliveries(ctx context.Context, s *Store, n int, days int, seed int64) error {
	if n < 0 || days < 1 {
		return fmt.Errorf("%w: generate needs n >= 0 and days >= 1 (got n=%d, days=%d)", ErrBadInput, n, days)
	}
	w, err := s.writer()
	if err != nil {
		return err
	}
	// A bigger page cache for the one writer connection while filling.
	if s.eng == engSQLite {
		if _, err := w.ExecContext(ctx, "PRAGMA cache_size = -524288"); err != nil {
			return fmt.Errorf("store: generate: %w", err)
		}
		defer w.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA cache_size = -%d", writerCacheKiB)) //nolint:errcheck // best effort
	}

	g := newGenerator(n, seed)
	end := s.now().UTC().Truncate(time.Second)
	spanUS := int64(days) * usPerDay
	startUS := micros(end) - spanUS
	const batch = 100_000
	ds := make([]delivery.Delivery, 0, batch)
	for i := 0; i < n; i++ {
		us := startUS + int64(float64(i)/float64(n)*float64(spanUS))
		ds = append(ds, g.delivery(i, fromMicros(us), float64(i)/float64(n)))
		if len(ds) == batch || i == n-1 {
			if _, err := s.AddDeliveries(ctx, ds); err != nil {
				return err
			}
			ds = ds[:0]
		}
	}
	return nil
}

type genDomain struct {
	name      string
	mx        []genMX
	plainOnly bool
	plainMX   int     // index of a plaintext MX, -1 if none
	loseTLS   float64 // fraction of the period after which TLS stops; 0 = never
}

type genMX struct {
	host, addr      string
	trust, protocol string
	cipher          string
}

type generator struct {
	r       *rand.Rand
	zipf    *rand.Zipf
	domains []genDomain
	seed    int64
}

func newGenerator(n int, seed int64) *generator {
	nd := min(max(n/100, 50), 200_000)
	r := rand.New(rand.NewSource(seed))
	g := &generator{r: r, zipf: rand.NewZipf(r, 1.1, 2, uint64(nd-1)), seed: seed}
	trusts := []string{"trusted", "trusted", "trusted", "trusted", "untrusted", "untrusted", "verified", "anonymous"}
	for i := 0; i < nd; i++ {
		d := genDomain{name: "d" + strconv.Itoa(i) + ".example", plainMX: -1}
		if i%7 == 3 {
			d.name = "mail" + strconv.Itoa(i) + ".sub.d" + strconv.Itoa(i/7) + ".example" // some subdomains
		}
		switch x := r.Float64(); {
		case x < 0.08:
			d.plainOnly = true
		case x < 0.11:
			d.plainMX = 0
		case x < 0.115:
			d.loseTLS = 0.3 + 0.6*r.Float64()
		}
		for k := 0; k < 1+r.Intn(3); k++ {
			m := genMX{host: "mx" + strconv.Itoa(k) + "." + d.name, addr: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, k)}
			m.trust = trusts[r.Intn(len(trusts))]
			if r.Float64() < 0.75 {
				m.protocol = "TLSv1.3"
				m.cipher = []string{"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}[r.Intn(3)]
			} else if r.Float64() < 0.96 {
				m.protocol = "TLSv1.2"
				m.cipher = []string{"ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256"}[r.Intn(2)]
			} else {
				m.protocol = "TLSv1"
				m.cipher = "ECDHE-RSA-AES256-SHA"
			}
			d.mx = append(d.mx, m)
		}
		g.domains = append(g.domains, d)
	}
	return g
}

func (g *generator) delivery(i int, t time.Time, progress float64) delivery.Delivery {
	r := g.r
	d := &g.domains[g.zipf.Uint64()]
	mi := r.Intn(len(d.mx))
	m := &d.mx[mi]
	var key [32]byte
	h := sha256.Sum256(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(g.seed)), uint64(i)))
	copy(key[:], h[:])
	binary.BigEndian.PutUint64(key[:8], uint64(g.seed)<<40+uint64(i))
	dl := delivery.Delivery{
		Time: t, LogHost: "mail", Process: "postfix/smtp", PID: 1000 + r.Intn(5000),
		QueueID:   fmt.Sprintf("%010X", r.Int63()&0xFFFFFFFFFF),
		Recipient: "u" + strconv.Itoa(r.Intn(1000)) + "@" + d.name,
		Domain:    d.name, Relay: m.host + "[" + m.addr + "]:25",
		Key: hex.EncodeToString(key[:]),
	}
	plain := d.plainOnly || mi == d.plainMX || (d.loseTLS > 0 && progress > d.loseTLS)
	var tls *bool
	switch {
	case r.Float64() < 0.01:
		// unknown
	case plain:
		f := false
		tls = &f
	default:
		tt := true
		tls = &tt
		dl.TLSTrust, dl.TLSProtocol, dl.TLSCipher = delivery.Trust(m.trust), m.protocol, m.cipher
	}
	dl.TLS = tls
	switch x := r.Float64(); {
	case x < 0.94:
		dl.Status, dl.DSN, dl.Reason = delivery.Sent, "2.0.0", "250 2.0.0 Ok: queued"
		if plain && !d.plainOnly && r.Float64() < 0.2 {
			dl.Fallback = true
		}
	case x < 0.985:
		dl.Status, dl.DSN, dl.Reason = delivery.Deferred, "4.4.1", "connect to "+m.host+"["+m.addr+"]:25: Connection timed out"
		if !d.plainOnly && r.Float64() < 0.1 {
			dl.DSN, dl.Reason, dl.TLSFailure = "4.7.5", "Cannot start TLS: handshake failure", true
		}
	case x < 0.995:
		dl.Status, dl.DSN, dl.Reason = delivery.Bounced, "5.1.1", "host said: 550 5.1.1 User unknown"
	default:
		dl.Status, dl.DSN, dl.Reason = delivery.Expired, "4.4.1", "message expired"
	}
	return dl
}
