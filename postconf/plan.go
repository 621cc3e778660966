package postconf

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mailtls/mailtls/policyd"
)

// Setting is one main.cf parameter to set.
type Setting struct{ Name, Value string }

// Wiring is the plan of changes that joins mailtls's map to main.cf.
type Wiring struct {
	Settings   []Setting // main.cf parameters to set, in order
	NotFound   bool      // mailtls must answer NOTFOUND for destinations without an override
	SetDefault bool      // the mailtls config file must get default = notfound (PlanDefault)
	Decisions  []string  // one line per decision taken
	Warnings   []string
}

// SocketmapMap is the smtp_tls_policy_maps entry of a socketmap listener
// at addr (host:port, or unix:PATH) answering map name.
func SocketmapMap(addr, name string) string {
	if strings.HasPrefix(addr, "unix:") {
		return fmt.Sprintf("socketmap:%s:%s", addr, name)
	}
	return fmt.Sprintf("socketmap:inet:%s:%s", addr, name)
}

// TCPMap is the smtp_tls_policy_maps entry of a tcp_table listener.
func TCPMap(addr string) string { return "tcp:" + addr }

// Plan decides how mailtls's map ours joins main.cf without making any
// destination weaker than Postfix alone would make it.
//
// Postfix stops at the first smtp_tls_policy_maps table that has a key,
// and then neither walks parent domains nor applies
// smtp_tls_security_level (smtp_tls_policy.c). mailtls answering may for
// every key is therefore right only when Postfix's own level is may or
// weaker and no other table is listed. Otherwise mailtls goes first and
// answers NOTFOUND without an override: Postfix then asks the tables after
// it for the same key, walks the parent domains itself (".example.com",
// which mailtls answers for its own .parent overrides too), and falls back
// to smtp_tls_security_level, which keeps its value.
func Plan(st State, ours string) Wiring {
	var w Wiring
	level := st.Level
	switch level {
	case "":
		w.Warnings = append(w.Warnings, "smtp_tls_security_level is unset (Postfix default: no TLS at all); setting it to may")
		w.Settings = append(w.Settings, Setting{"smtp_tls_security_level", "may"})
		level = "may"
	case "none":
		w.Warnings = append(w.Warnings, "smtp_tls_security_level = none: mail goes out without TLS wherever the policy map is not used")
	}
	if st.LogLevel == "" || st.LogLevel == "0" {
		w.Warnings = append(w.Warnings, "smtp_tls_loglevel = 0: Postfix logs no TLS summary lines, so mailtls cannot know which deliveries were encrypted; setting it to 1")
		w.Settings = append(w.Settings, Setting{"smtp_tls_loglevel", "1"})
	}
	others := otherMaps(st.Maps, ours)
	strong := policyd.AboveMay(level)
	w.NotFound = strong || len(others) > 0
	if strong {
		w.Decisions = append(w.Decisions, fmt.Sprintf("smtp_tls_security_level = %s is stronger than may: mailtls answers NOTFOUND for destinations without an override, so %s still applies to them", level, level))
	}
	if len(others) > 0 {
		w.Decisions = append(w.Decisions, fmt.Sprintf("existing smtp_tls_policy_maps %s: mailtls goes first and answers NOTFOUND without an override, so these tables still decide after it, their .parent entries included", strings.Join(others, ", ")))
	}
	if !w.NotFound {
		w.Decisions = append(w.Decisions, fmt.Sprintf("smtp_tls_security_level = %s and no other policy table: mailtls answers may for destinations without an override, as Postfix alone would", level))
	}
	want := append([]string{ours}, others...)
	if !slices.Equal(want, st.Maps) {
		if slices.Contains(st.Maps, ours) {
			w.Decisions = append(w.Decisions, "smtp_tls_policy_maps: moving mailtls first")
		}
		w.Settings = append(w.Settings, Setting{"smtp_tls_policy_maps", strings.Join(want, ", ")})
	}
	return w
}

// otherMaps is maps without ours and without repeats, in order.
func otherMaps(maps []string, ours ...string) []string {
	var others []string
	for _, m := range maps {
		if !slices.Contains(ours, m) && !slices.Contains(others, m) {
			others = append(others, m)
		}
	}
	return others
}

// PlanDefault adds to w the decision on the default answer of mailtls's
// config file at path, whose default is cur (as the file sets it, or the
// flag's default): it must be notfound when w.NotFound.
func (w *Wiring) PlanDefault(path, cur string) {
	isNotFound := strings.EqualFold(strings.TrimSpace(cur), "notfound")
	w.SetDefault = w.NotFound && !isNotFound
	if w.SetDefault {
		w.Decisions = append(w.Decisions, fmt.Sprintf("%s: default = notfound (was %s)", path, cur))
	} else if !w.NotFound && isNotFound {
		w.Decisions = append(w.Decisions, fmt.Sprintf("%s: keeping default = notfound (the same as may here: Postfix's own level is may)", path))
	}
}

// Warning is one reason a daemon's default answer is weaker than main.cf,
// with its log attributes.
type Warning struct {
	Msg  string
	Args []any
}

// Weaker says when the default answer def (a policy, not notfound) makes
// destinations without an override weaker than Postfix alone would: a
// default of may or none under a stronger smtp_tls_security_level, or any
// default in front of other policy tables (Postfix stops at the first
// table that answers). ours are the daemon's own map entries (DaemonMaps).
func Weaker(def string, st State, ours []string) []Warning {
	var out []Warning
	defLevel, _, _ := strings.Cut(def, " ")
	if !policyd.AboveMay(defLevel) && policyd.AboveMay(st.Level) {
		out = append(out, Warning{fmt.Sprintf("default answer %s is weaker than main.cf smtp_tls_security_level = %s: destinations without an override get %s instead of %s; set default = notfound (mailtls postfix-config --apply)", defLevel, st.Level, defLevel, st.Level),
			[]any{"default", def, "smtp_tls_security_level", st.Level}})
	}
	var others []string
	for _, m := range st.Maps {
		if !slices.Contains(ours, m) {
			others = append(others, m)
		}
	}
	if len(others) > 0 {
		out = append(out, Warning{fmt.Sprintf("smtp_tls_policy_maps also lists %s: with default %s mailtls answers every key, so Postfix skips what those tables say for parent domains (or, with mailtls first, altogether); set default = notfound (mailtls postfix-config --apply)", strings.Join(others, ", "), defLevel),
			[]any{"default", def, "smtp_tls_policy_maps", strings.Join(st.Maps, ", ")}})
	}
	return out
}

// DaemonMaps are the map entries a daemon's listeners answer as: its
// socketmap (TCP), tcp_table, unix socketmap and unix tcp_table addresses
// with the socketmap map name.
func DaemonMaps(socketmap, tcp, unix, tcpUnix, name string) []string {
	return []string{
		"socketmap:inet:" + socketmap + ":" + name, TCPMap(tcp),
		"socketmap:unix:" + unix + ":" + name, "tcp:unix:" + tcpUnix,
	}
}
