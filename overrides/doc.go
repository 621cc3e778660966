// Package overrides is `mailtls policy`: set, rm, list, history, import
// and export of the per-destination overrides, from the operator's words
// to the store and back. It reads the arguments into policyd's terms (the
// one key and policy grammar), writes through the store's validating write
// path with who made the change, and renders the answers (text, JSON, CSV
// through package output).
//
// It is a package of its own, not part of store or report, because it is
// the steps between them: store owns the rows and their history and never
// prints; report shapes delivery reports, not override edits. The command
// package keeps the flags and one call per command.
package overrides
