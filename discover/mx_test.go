package discover

import (
	"reflect"
	"testing"

	"github.com/miekg/dns"
)

func TestParseMX(t *testing.T) {
	mx := func(pref uint16, host string) dns.RR {
		return &dns.MX{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeMX, Class: dns.ClassINET}, Preference: pref, Mx: host}
	}
	cname := &dns.CNAME{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeCNAME}, Target: "x.example."}
	for name, c := range map[string]struct {
		rrs  []dns.RR
		want MXSet
	}{
		// The first record of a host counts; ties are by name.
		"sorted, deduplicated, lower case": {[]dns.RR{mx(20, "B.example.com."), mx(10, "c.example.com."), mx(20, "a.example.com"), mx(5, "b.example.com.")},
			MXSet{Hosts: []MXHost{{"c.example.com", 10}, {"a.example.com", 20}, {"b.example.com", 20}}}},
		"implicit":        {[]dns.RR{cname}, MXSet{Hosts: []MXHost{{"example.com", 0}}, Implicit: true}},
		"null":            {[]dns.RR{mx(0, ".")}, MXSet{Null: true}},
		"null with hosts": {[]dns.RR{mx(0, "."), mx(10, "mx.example.com.")}, MXSet{Hosts: []MXHost{{"mx.example.com", 10}}, NullMixed: true}},
	} {
		got := ParseMX("example.com", c.rrs)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: ParseMX = %+v, want %+v", name, got, c.want)
		}
	}
}
