package gen

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// Deliveries calls fn with n synthetic deliveries, in batches of at most
// batch, spread evenly over the days days before end, for benchmarks and
// demos: bench/cmd/filldb stores them. The same seed gives the same
// deliveries (relative to end).
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
// fn may keep the slice: each batch is a new one.
func Deliveries(n, days int, seed int64, end time.Time, batch int, fn func([]delivery.Delivery) error) error {
	if n < 0 || days < 1 || batch < 1 {
		return fmt.Errorf("gen: deliveries need n >= 0, days >= 1 and batch >= 1 (got n=%d, days=%d, batch=%d)", n, days, batch)
	}
	g := NewDeliveryModel(n, seed)
	endUS := end.UTC().Truncate(time.Second).UnixMicro()
	spanUS := int64(days) * int64(24*time.Hour/time.Microsecond)
	startUS := endUS - spanUS
	ds := make([]delivery.Delivery, 0, min(batch, n))
	for i := 0; i < n; i++ {
		us := startUS + int64(float64(i)/float64(n)*float64(spanUS))
		ds = append(ds, g.Delivery(i, time.UnixMicro(us).UTC(), float64(i)/float64(n)))
		if len(ds) == batch || i == n-1 {
			if err := fn(ds); err != nil {
				return err
			}
			ds = make([]delivery.Delivery, 0, min(batch, n-i-1))
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

// DeliveryModel makes the deliveries of Deliveries one by one, for a
// benchmark that wants them in its own batches.
type DeliveryModel struct {
	r       *rand.Rand
	zipf    *rand.Zipf
	domains []genDomain
	seed    int64
}

// NewDeliveryModel returns the model of n deliveries with this seed.
func NewDeliveryModel(n int, seed int64) *DeliveryModel {
	nd := min(max(n/100, 50), 200_000)
	r := rand.New(rand.NewSource(seed))
	g := &DeliveryModel{r: r, zipf: rand.NewZipf(r, 1.1, 2, uint64(nd-1)), seed: seed}
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

// Delivery returns the next delivery, the i-th, at t, progress (0 to 1)
// through the period.
func (g *DeliveryModel) Delivery(i int, t time.Time, progress float64) delivery.Delivery {
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
