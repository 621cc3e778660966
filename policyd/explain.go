package policyd

import "strings"

// Where an answer came from, as `mailtls lookup` names it: an override,
// the default, or the publisher's own source ("dane", "mta-sts").
const (
	SourceOverride = "override"
	SourceDefault  = "default"
)

// Explain says how the lookup r was answered: rule is r.Rule, or
// "expired" when the default answered because the override that matched
// has expired; source is SourceOverride, the publisher's source or
// SourceDefault ("" when the publisher could not tell); why is one line
// for a person.
func (r Result) Explain() (rule, source, why string) {
	rule = r.Rule
	switch r.Rule {
	case RuleExact:
		source, why = SourceOverride, "exact override "+r.Key
	case RuleWildcard:
		source, why = SourceOverride, "wildcard override "+r.Key
	case RulePublished:
		source, why = r.Source, r.Source+": published by the destination; no override matches"
	case RuleDefault, RuleNotFound:
		source, why = SourceDefault, "default: no override matches"
		if len(r.Expired) > 0 {
			rule = "expired"
		}
	default:
		why = "default: no override matches"
	}
	if len(r.Expired) > 0 {
		why += "; expired override ignored: " + strings.Join(r.Expired, ", ")
	}
	return rule, source, why
}
