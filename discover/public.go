package discover

import (
	"fmt"
	"net/netip"
	"strings"
)

// StepAddress is the Probe.FailedStep of an MX that was not probed because
// none of its addresses is public.
const StepAddress = "address"

// nonPublicPrefixes are special-purpose ranges that net/netip has no
// method for (IANA IPv4 and IPv6 Special-Purpose Address Registries,
// RFC 6890): nothing on the Internet answers there, so an MX or policy
// host resolving to one is misconfigured or an attempt to make the check
// connect inside our own network.
var nonPublicPrefixes = []struct {
	prefix netip.Prefix
	kind   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},                 // RFC 791
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},           // RFC 6598
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"}, // RFC 6890
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},             // RFC 5737
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},             // RFC 2544
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},          // RFC 5737
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},           // RFC 5737
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},                   // RFC 1112, incl. broadcast
	{netip.MustParsePrefix("100::/64"), "discard-only"},                  // RFC 6666
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},            // RFC 3849
	{netip.MustParsePrefix("3fff::/20"), "documentation"},                // RFC 9637
	{netip.MustParsePrefix("fec0::/10"), "site-local"},                   // RFC 3879
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},         // RFC 8215
}

// NonPublic returns why addr is not a public unicast address (loopback,
// private, link-local, documentation, ...), or "" when it is public.
// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
func NonPublic(addr netip.Addr) string {
	a := addr.Unmap()
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	for _, p := range nonPublicPrefixes {
		if p.prefix.Contains(a) {
			return p.kind
		}
	}
	return ""
}

// splitPublic separates the public addresses from the others; skipped
// holds "addr (kind)" for each one left out.
func splitPublic(addrs []string) (public, skipped []string) {
	for _, s := range addrs {
		a, err := netip.ParseAddr(s)
		kind := "unparsable"
		if err == nil {
			kind = NonPublic(a)
		}
		if kind == "" {
			public = append(public, s)
		} else {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", s, kind))
		}
	}
	return public, skipped
}

// notPublicError is the one-line reason a host was not contacted.
func notPublicError(skipped []string) string {
	if len(skipped) == 1 {
		return "not probed: its only address " + skipped[0] + " is not public"
	}
	return "not probed: none of its addresses is public: " + strings.Join(skipped, ", ")
}
