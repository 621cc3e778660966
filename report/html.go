package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The page is one file with no script and nothing fetched: styles are
// inline, charts are inline SVG drawn here, and the Content-Security-Policy
// below makes the browser refuse anything else.
//
//go:embed page.html.tmpl
var pageText string

// ContentSecurityPolicy is the policy of the page: no script, no fetch,
// inline styles only. The page carries it in a <meta> element (for the
// file) and Handler also sends it as a header.
const ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

// pageTmpl is parsed at its first use, not at start: parsing it takes
// 0.8 ms, which every command paid at start when it was a package
// variable.
var pageTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Funcs(template.FuncMap{
		"num": Num,
		"pct": pctOf,
		"csp": func() string { return ContentSecurityPolicy },
		"utc": func(s string) string { return strings.Replace(strings.TrimSuffix(s, "Z"), "T", " ", 1) },
		"short": func(s string) string {
			if r := []rune(s); len(r) > 28 {
				return string(r[:27]) + "…"
			}
			return s
		},
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
	}).Parse(pageText))
})

// Num formats n with thousands separators.
func Num(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// pctOf renders a 4-decimal coverage ratio as a percentage with 2
// decimals: the same digits, so the page shows exactly the JSON's value.
func pctOf(c fmt.Stringer) string {
	f, err := strconv.ParseFloat(c.String(), 64)
	if err != nil {
		return c.String()
	}
	return strconv.FormatFloat(f*100, 'f', 2, 64) + "%"
}

// Chart geometry, in SVG user units.
const (
	dayW, dayH                   = 960, 300
	dayLeft, dayRight            = 56, 120
	dayTop, dayBottom            = 16, 44
	barRowH, barLabelW, barValue = 26, 200, 210
	barW                         = 960
)

type tick struct {
	Pos   float64
	Label string
}

type band struct {
	Class, Label   string
	Area, Line     string // polygon and upper-edge polyline points
	Points         int
	LabelX, LabelY float64
}

type dayPoint struct {
	X, Y  float64
	Day   string
	Title string
}

type dayChart struct {
	W, H           int
	X0, X1, Y0, Y1 float64
	Bands          []band
	Points         []dayPoint
	XTicks, YTicks []tick
}

type bar struct {
	Key          string
	Value        int64
	Y, W, TextY  float64
	ValueX       float64
	Label, Title string
}

type barChart struct {
	Name    string // trust, protocol or plaintext
	Title   string
	W, H    int
	AxisY   float64 // baseline of the axis label
	X0      float64
	Bars    []bar
	Caption string
}

type countRow struct {
	Key   string
	Count int64
}

type pageView struct {
	*Data
	Since, Until string
	PrunedBefore string
	Empty        bool
	DayChart     dayChart
	Known        int64
	Trust        []countRow
	Protocol     []countRow
	TrustChart   barChart
	ProtoChart   barChart
	PlainChart   barChart
}

// WriteHTML renders d as one self-contained HTML page.
func WriteHTML(w io.Writer, d *Data) error {
	v := pageView{Data: d, Since: RFC3339(d.Window.Since), Until: RFC3339(d.Window.Until)}
	if !d.PrunedBefore.IsZero() {
		v.PrunedBefore = d.PrunedBefore.UTC().Format(time.DateOnly)
	}
	s := d.Summary
	v.Empty = s.Deliveries == 0 && s.Deferred == 0 && s.Bounced == 0
	v.Known = s.Encrypted + s.Plaintext
	v.Trust = ordered(s.ByTrust, trustOrder)
	v.Protocol = ordered(s.ByProtocol, nil)
	v.DayChart = newDayChart(d.Days)
	v.TrustChart = newBarChart("trust", "Trust of encrypted deliveries", v.Trust, "encrypted deliveries")
	v.ProtoChart = newBarChart("protocol", "Protocol of encrypted deliveries", v.Protocol, "encrypted deliveries")
	plain := make([]countRow, len(d.Plaintext))
	for i, r := range d.Plaintext {
		plain[i] = countRow{r.Key, r.Plaintext}
	}
	v.PlainChart = newBarChart("plaintext", "Destinations that got the most plaintext", plain, "plaintext deliveries")
	for i, r := range d.Plaintext {
		v.PlainChart.Bars[i].Label = fmt.Sprintf("%s plaintext of %s sent", Num(r.Plaintext), Num(r.Deliveries))
	}
	var b bytes.Buffer
	if err := pageTmpl().Execute(&b, v); err != nil {
		return fmt.Errorf("report: html: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// ordered lists m in the preferred order, then the other keys by count
// (most first) and name.
func ordered(m map[string]int64, prefer []string) []countRow {
	var out []countRow
	seen := map[string]bool{}
	for _, k := range prefer {
		if n, ok := m[k]; ok {
			out = append(out, countRow{k, n})
			seen[k] = true
		}
	}
	var rest []countRow
	for k, n := range m {
		if !seen[k] {
			rest = append(rest, countRow{k, n})
		}
	}
	sort.Slice(rest, func(i, j int) bool {
		if rest[i].Count != rest[j].Count {
			return rest[i].Count > rest[j].Count
		}
		return rest[i].Key < rest[j].Key
	})
	return append(out, rest...)
}

func f1(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// r1 rounds a coordinate to 0.1 unit, which is all the page needs.
func r1(f float64) float64 { return math.Round(f*10) / 10 }

// newDayChart draws the share of sent deliveries per UTC day, stacked
// from the bottom: encrypted, plaintext, unknown. A day is placed by its
// date, so days without mail leave a gap in the points (not a zero).
func newDayChart(days []Row) dayChart {
	c := dayChart{W: dayW, H: dayH, X0: dayLeft, X1: dayW - dayRight, Y0: dayTop, Y1: dayH - dayBottom}
	for i := 0; i <= 4; i++ {
		c.YTicks = append(c.YTicks, tick{c.Y1 - float64(i)/4*(c.Y1-c.Y0), strconv.Itoa(i*25) + "%"})
	}
	if len(days) == 0 {
		return c
	}
	dayNum := func(k string) float64 {
		t, err := time.Parse(time.DateOnly, k)
		if err != nil {
			return 0
		}
		return float64(t.Unix() / 86400)
	}
	first, last := dayNum(days[0].Key), dayNum(days[len(days)-1].Key)
	x := func(k string) float64 {
		if last == first {
			return (c.X0 + c.X1) / 2
		}
		return c.X0 + (dayNum(k)-first)/(last-first)*(c.X1-c.X0)
	}
	y := func(share float64) float64 { return c.Y1 - share*(c.Y1-c.Y0) }
	// cum[s][i]: upper edge of series s on day i, as a share of sent.
	n := len(days)
	cum := [3][]float64{make([]float64, n), make([]float64, n), make([]float64, n)}
	for i, d := range days {
		if d.Deliveries == 0 {
			continue
		}
		t := float64(d.Deliveries)
		cum[0][i] = float64(d.Encrypted) / t
		cum[1][i] = cum[0][i] + float64(d.Plaintext)/t
		cum[2][i] = cum[1][i] + float64(d.Unknown())/t
	}
	// A single day is drawn as a band 40 units wide.
	xs := make([]float64, n)
	for i, d := range days {
		xs[i] = x(d.Key)
	}
	edgeX := xs
	if n == 1 {
		edgeX = []float64{xs[0] - 20, xs[0] + 20}
		for s := range cum {
			cum[s] = []float64{cum[s][0], cum[s][0]}
		}
	}
	line := func(vals []float64) string {
		var b strings.Builder
		for i, v := range vals {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(f1(edgeX[i]) + "," + f1(y(v)))
		}
		return b.String()
	}
	names := [3][2]string{{"encrypted", "Encrypted"}, {"plaintext", "Plaintext"}, {"unknown", "Unknown TLS"}}
	lower := make([]float64, len(edgeX))
	for s := range cum {
		upper := cum[s]
		rev := make([]float64, len(lower))
		var back strings.Builder
		for i := len(lower) - 1; i >= 0; i-- {
			rev[len(lower)-1-i] = lower[i]
			back.WriteString(" " + f1(edgeX[i]) + "," + f1(y(lower[i])))
		}
		mid := (upper[len(upper)-1] + lower[len(lower)-1]) / 2
		c.Bands = append(c.Bands, band{Class: names[s][0], Label: names[s][1],
			Area: line(upper) + back.String(), Line: line(upper), Points: n,
			LabelX: c.X1 + 8, LabelY: y(mid)})
		lower = upper
	}
	spreadLabels(c.Bands, 14, c.Y0+4, c.Y1)
	for i := range c.Bands {
		c.Bands[i].LabelY = r1(c.Bands[i].LabelY)
	}
	for i, d := range days {
		c.Points = append(c.Points, dayPoint{X: r1(xs[i]), Y: r1(y(cum[0][i])), Day: d.Key,
			Title: fmt.Sprintf("%s: %s sent, %s encrypted, %s plaintext, %s unknown; coverage %s",
				d.Key, Num(d.Deliveries), Num(d.Encrypted), Num(d.Plaintext), Num(d.Unknown()), pctOf(d.Coverage))})
	}
	// At most about 8 date labels.
	step := max(1, int(math.Ceil(float64(n)/8)))
	for i := 0; i < n; i += step {
		c.XTicks = append(c.XTicks, tick{xs[i], days[i].Key[5:]})
	}
	if (n-1)%step != 0 {
		c.XTicks = append(c.XTicks, tick{xs[n-1], days[n-1].Key[5:]})
	}
	return c
}

// spreadLabels moves the direct labels of the bands apart so that they
// are at least gap units from each other and within [lo, hi].
func spreadLabels(bs []band, gap, lo, hi float64) {
	idx := make([]int, len(bs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return bs[idx[a]].LabelY < bs[idx[b]].LabelY })
	for k, i := range idx {
		if bs[i].LabelY < lo {
			bs[i].LabelY = lo
		}
		if k > 0 && bs[i].LabelY < bs[idx[k-1]].LabelY+gap {
			bs[i].LabelY = bs[idx[k-1]].LabelY + gap
		}
	}
	for k := len(idx) - 1; k >= 0; k-- {
		i := idx[k]
		limit := hi
		if k < len(idx)-1 {
			limit = bs[idx[k+1]].LabelY - gap
		}
		if bs[i].LabelY > limit {
			bs[i].LabelY = limit
		}
	}
}

// newBarChart draws one horizontal bar per row, labelled with its key and
// its count, so no colour is needed to read it.
func newBarChart(name, title string, rows []countRow, what string) barChart {
	c := barChart{Name: name, Title: title, W: barW, H: len(rows)*barRowH + 30, AxisY: float64(len(rows)*barRowH + 22), X0: barLabelW, Caption: what}
	var top int64
	for _, r := range rows {
		top = max(top, r.Count)
	}
	span := float64(barW - barLabelW - barValue)
	for i, r := range rows {
		w := 0.0
		if top > 0 {
			w = float64(r.Count) / float64(top) * span
		}
		y := float64(i*barRowH) + 4
		c.Bars = append(c.Bars, bar{Key: r.Key, Value: r.Count, Y: y, W: r1(math.Max(w, 1)), TextY: y + 13,
			ValueX: r1(barLabelW + w + 6), Label: Num(r.Count), Title: r.Key + ", " + what + ": " + Num(r.Count)})
	}
	return c
}
