// Package policyd answers Postfix TLS policy lookups (smtp_tls_policy_maps)
// from an immutable in-memory snapshot of operator overrides.
//
// It implements:
//   - the policy grammar of postconf(5) smtp_tls_policy_maps (ParsePolicy),
//     validated tightly enough that a stored value can never make Postfix
//     defer mail for a malformed attribute;
//   - next-hop key normalisation (NormalizeKey): lowercase, IDNA A-labels
//     (RFC 5891), bracketed next-hops from transport(5);
//   - lookup semantics (Snapshot.Lookup): exact, then ".parent" wildcards,
//     then a default, as Postfix would do for a static table;
//   - the socketmap_table(5) protocol (netstrings, https://cr.yp.to/proto/netstrings.txt)
//     and the tcp_table(5) protocol, each with persistent connections,
//     read deadlines, request size caps and a connection cap.
//
// The package never touches a database: a Source feeds a Table, and the
// servers answer from the Table's current Snapshot.
package policyd
