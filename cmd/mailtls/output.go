package main

import "strings"

// checkFormat validates a --format value against the accepted set.
func checkFormat(got string, accepted ...string) error {
	for _, a := range accepted {
		if got == a {
			return nil
		}
	}
	return usageErrorf("invalid --format %q (want one of %s)", got, strings.Join(accepted, ", "))
}
