// Package published answers, for a destination domain, the TLS policy the
// destination itself publishes: DANE (RFC 7672) or MTA-STS (RFC 8461), in
// the precedence of RFC 8461 §2, as a Postfix smtp_tls_policy_maps value.
//
//   - DANE: the MX RRset is DNSSEC-validated and the MX hosts have usable
//     TLSA records at _25._tcp.<mx> (DANE-TA or DANE-EE, RFC 7672 §3.1.3)
//     whose answers, and the hosts' address records, are validated too
//     (RFC 7672 §2.2). Validation is the AD bit, trusted only from a
//     resolver on loopback, as Postfix requires (smtp_dns_support_level).
//     Every MX usable gives "dane-only", some give "dane".
//   - MTA-STS enforce: "secure match=<patterns> servername=hostname".
//   - Anything else (testing, none, no policy, a lookup failure with
//     nothing cached) gives no answer: the caller answers its default. A
//     testing policy is kept for reports.
//
// Caching follows RFC 8461 §3.3 and §5.1: a policy is cached for its
// max_age, refetched when the TXT id changes, and kept while unexpired when
// a refresh fails or the TXT record disappears. DNS answers are cached for
// their TTL, negative answers for the SOA's negative TTL (RFC 2308).
//
// Lookups never wait on I/O for a destination already resolved: they read
// an in-memory map, and resolution runs on a bounded pool of workers. A
// destination seen for the first time waits for its resolution at most a
// budget; when that runs out it gets no answer and resolution finishes in
// the background. Proactive refresh before expiry covers only destinations
// the caller reports as active (recorded deliveries in the refresh window),
// so that no lookups are made for domains no one mails.
package published
