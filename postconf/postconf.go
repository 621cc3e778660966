// Package postconf holds what mailtls knows of Postfix's main.cf: the
// parameters it reads through postconf(1) (the TLS level in force, legacy
// parameters resolved; the log level; the policy map list), the plan of
// changes that wires mailtls in without making any destination weaker
// than Postfix alone would, `mailtls postfix-config` itself (Configure:
// the plan printed one line per decision, and applied through postconf -e
// and the mailtls config file), and the checks of a running daemon's
// default answer against main.cf.
package postconf

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// State is what mailtls needs to know of a running main.cf.
type State struct {
	Level    string   // effective smtp_tls_security_level, legacy parameters resolved; "" for none by default
	LogLevel string   // smtp_tls_loglevel
	Maps     []string // smtp_tls_policy_maps, in order
}

// Postconf runs postconf(1): Bin is the program, Dir the configuration
// directory (postconf -c), empty for Postfix's default (or MAIL_CONFIG).
type Postconf struct{ Bin, Dir string }

func (p Postconf) args(extra ...string) []string {
	if p.Dir != "" {
		return append([]string{"-c", p.Dir}, extra...)
	}
	return extra
}

// State reads the parameters Plan needs; ok is false when postconf
// cannot be run.
func (p Postconf) State(ctx context.Context) (State, bool) {
	v, ok := p.read(ctx, "smtp_tls_security_level", "smtp_tls_loglevel", "smtp_tls_policy_maps",
		"smtp_enforce_tls", "smtp_use_tls", "smtp_tls_enforce_peername")
	if !ok {
		return State{}, false
	}
	return State{Level: EffectiveLevel(v), LogLevel: v["smtp_tls_loglevel"], Maps: SplitMaps(v["smtp_tls_policy_maps"])}, true
}

// EffectiveLevel is the level Postfix's smtp(8) uses when no policy table
// answers: smtp_tls_security_level, or when that is empty the obsolete
// smtp_enforce_tls / smtp_use_tls (postconf(5)).
func EffectiveLevel(v map[string]string) string {
	yes := func(s string) bool { return strings.EqualFold(s, "yes") }
	switch {
	case v["smtp_tls_security_level"] != "":
		return strings.ToLower(v["smtp_tls_security_level"])
	case yes(v["smtp_enforce_tls"]) && yes(v["smtp_tls_enforce_peername"]):
		return "verify"
	case yes(v["smtp_enforce_tls"]):
		return "encrypt"
	case yes(v["smtp_use_tls"]):
		return "may"
	}
	return ""
}

// read returns the values in force (postconf, defaults included) of
// names; ok is false when postconf cannot be run.
func (p Postconf) read(ctx context.Context, names ...string) (map[string]string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.Bin, p.args(names...)...).Output()
	if err != nil {
		if _, lerr := exec.LookPath(p.Bin); lerr != nil || ctx.Err() != nil {
			return nil, false
		}
		// postconf exits non-zero for unknown names only; those are unset.
	}
	vals := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok {
			vals[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return vals, true
}

// Edit sets the parameters in main.cf with postconf -e.
func (p Postconf) Edit(settings []Setting) error {
	args := []string{"-e"}
	for _, s := range settings {
		args = append(args, s.Name+" = "+s.Value)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(p.Bin, p.args(args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("postconf -e failed: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// SplitMaps splits a Postfix map list (comma and/or whitespace separated),
// keeping braced text such as inline:{ a=b, c=d } in one piece.
func SplitMaps(v string) []string {
	var out []string
	depth, start := 0, -1
	for i, r := range v {
		sep := depth == 0 && strings.ContainsRune(", \t\r\n", r) // CHARS_COMMA_SP
		switch {
		case sep:
			if start >= 0 {
				out = append(out, v[start:i])
				start = -1
			}
			continue
		case r == '{':
			depth++
		case r == '}' && depth > 0:
			depth--
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 { // an unbalanced "{" runs to the end
		if tail := strings.TrimRight(v[start:], ", \t\r\n"); tail != "" {
			out = append(out, tail)
		}
	}
	return out
}
