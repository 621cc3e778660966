// Package mtasts is the vocabulary of SMTP MTA Strict Transport Security,
// RFC 8461: the _mta-sts TXT record (§3.1), the policy file (§3.2) and its
// HTTPS fetch (§3.3), MX pattern matching (§4.1), and the Postfix
// smtp_tls_policy_maps answer that enforces a policy.
//
// It holds no state and does no DNS: callers look up the TXT record and
// the policy host's addresses themselves (discover for `mailtls check`,
// published for the policy daemon) and pass the dialer to Fetcher. The
// tag-list grammar of the TXT record is shared with TLSRPT (RFC 8460 §3),
// so ParseTagRecord and SelectRecord are exported for that parser.
package mtasts
