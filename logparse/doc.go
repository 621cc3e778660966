// Package logparse reads Postfix mail logs and reports, for every outbound
// delivery by an smtp(8) or lmtp(8) client, whether it went out over TLS.
//
// A Correlator is fed one raw log line at a time. It understands these line
// headers:
//
//   - traditional syslog (RFC 3164) stamps, space or zero padded:
//     "Nov  8 08:08:59 host postfix/smtp[123]: ...", which is also the format
//     of Postfix's own postlogd(8) (maillog_file). These carry no year; it is
//     inferred from Options.RefTime and from the order of the lines;
//   - RFC 3339 stamps as written by rsyslog and syslog-ng:
//     "2026-11-28T18:17:00.475607+00:00 host postfix/smtp[123]: ...";
//   - journald export objects, one per line, as printed by "journalctl -o json".
//
// Either of the first two may follow a container tool's prefix: the
// "docker compose logs" service name ("postfix-mailcow_1    | "), "kubectl
// logs --prefix" ("[pod/NAME/CONTAINER] "), a runtime's RFC 3339 stamp
// ("--timestamps", CRI "STAMP stdout F "), and some images print a
// severity in place of the host ("... INFO    postfix/smtp[138]: ...").
//
// Postfix writes the facts about one delivery on several lines of the same
// client process: a TLS summary line ("Untrusted TLS connection established
// to ...", only with smtp_tls_loglevel >= 1), then one "to=<...>, relay=...,
// status=..." line per recipient. The Correlator keeps one small session per
// process (tag and pid) and joins them; see Correlator for the exact rules.
// TLS summary lines exist only when TLS logging is on, so until the first one
// has been seen a delivery's TLS state is unknown (nil), not plaintext.
//
// The package does no I/O except in the followers (follow*.go, journal*.go).
// It follows the Postfix logging formats of postconf(5) smtp_tls_loglevel,
// postlogd(8), for Postfix 3.11 the "tls=" delivery status field, and for
// Postfix 3.10 built with libtlsrpt its "TLSRPT:" status lines.
package logparse
