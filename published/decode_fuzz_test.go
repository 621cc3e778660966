package published

import (
	"testing"

	"github.com/mailtls/mailtls/policyd"
)

// FuzzDecode: `report policies` decodes every stored cache entry. Any
// bytes give an entry or an error, never a panic; a decoded DANE or
// MTA-STS answer is a policy policyd accepts, and none carries no policy.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"result":{"source":"mta-sts","policy":"secure match=.outlook.example servername=hostname","evidence":{"mta_sts":{"id":"1","mode":"enforce","mx":["*.outlook.example"],"max_age":86400}}}}`,
		`{"v":1,"result":{"source":"none","evidence":{"mta_sts":{"id":"t","mode":"testing","mx":["mx.t.example"],"answer":"secure match=mx.t.example servername=hostname"}}}}`,
		`{"v":1,"result":{"source":"dane","policy":"dane-only","evidence":{"mx":[{"host":"mx.d.example","usable":true}]}}}`,
		`{"v":1,"result":{"source":"none"},"policy":{"id":"7","text":"version: STSv1\nmode: enforce\nmx: mx1.sts.example\nmax_age: 86400\n"}}`,
		`{"v":1,"result":{"source":"mta-sts","policy":"secure match=a,b"}}`,
		`{"v":2}`, `{not json`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		res, err := Decode("fuzz.example", []byte(data))
		if err != nil {
			return
		}
		switch res.Source {
		case SourceNone:
			if res.Policy != "" {
				t.Fatalf("none with policy %q", res.Policy)
			}
		case SourceDANE, SourceMTASTS:
			if _, err := policyd.ParsePolicy(res.Policy); err != nil {
				t.Fatalf("decoded answer %q does not validate: %v", res.Policy, err)
			}
		default:
			t.Fatalf("decoded unknown source %q", res.Source)
		}
	})
}
