// Package e2e runs mailtls against a real Postfix (3.7 on Debian 12).
//
// StartPostfix starts one isolated Postfix instance per call. The instance
// is both the sending MTA under test and its own set of receivers:
//
//	127.0.N.1:25  smtpd where tests inject mail (Send, via swaks)
//	127.0.N.2:25  receiver "tls":   STARTTLS with a certificate from a test CA
//	127.0.N.3:25  receiver "plain": no STARTTLS
//	127.0.N.4:25  receiver "tls1":  STARTTLS, but TLSv1.0 only (OpenSSL @SECLEVEL=0)
//	127.0.N.5:24  receiver "lmtp":  smtp-sink -L (LMTP, no TLS)
//	127.0.N.6:25  receiver "expired":   STARTTLS, a test CA certificate for expired.test that has expired
//	127.0.N.7:25  receiver "untrusted": STARTTLS, a certificate for untrusted.test from a CA no one trusts
//	127.0.N.53:53 with Config.DNS: the instance's DNS server (UDP and TCP)
//
// N is 1+slot, where the slot (0..7) is taken with flock(2) on
// /tmp/mailtls-e2e/slotS.lock, so that parallel tests and parallel `go test`
// runs each get their own addresses, queue and log. Receivers discard what
// they accept (content_filter=discard:) and have their own myhostname, so
// the sender does not see a mail loop.
//
// Names such as tls.test resolve through a private /etc/hosts: the master
// runs in its own mount namespace,
//
//	unshare -m sh -c 'mount --bind HOSTS /etc/hosts && postfix -c DIR start'
//
// with smtp_host_lookup=native and smtp_dns_support_level=disabled, so the
// TLS policy lookup key is the plain recipient domain, as in production.
// See DefaultHosts and Config.Hosts.
//
// With Config.DNS the SMTP client resolves through DNS instead, for DANE:
// the harness serves that zone on 127.0.N.53:53 (DNSAddr) and also binds a
// private /etc/resolv.conf ("nameserver 127.0.N.53", "options trust-ad",
// without which glibc clears the AD bit) in the namespace, with
// smtp_host_lookup=dns and smtp_dns_support_level=dnssec:
//
//	unshare -m sh -c 'mount --bind HOSTS /etc/hosts && mount --bind RESOLV /etc/resolv.conf && postfix -c DIR start'
//
// The machine's resolver is never asked. See TestRealDANE.
//
// The sender logs with smtp_tls_loglevel=1 through postlogd into
// maillog_file (LogPath), in the traditional "Mmm dd hh:mm:ss host tag[pid]:"
// format; receivers log to the same file with host "mx". Retries are fast:
// minimal_backoff_time=2s, maximal_backoff_time=4s, queue_run_delay=2s, so
// an opportunistic-TLS fallback to plaintext shows up within a few seconds.
// Built-in transports: out.test goes through "smtp-out" (syslog_name
// postfix-out, tag postfix-out/smtp) and lmtp.test through lmtp(8).
//
// Each instance lives in /tmp/mailtls-e2e/slotS (a fixed parent, because
// postfix daemons run as user postfix and cannot enter t.TempDir, and
// because alternate_config_directories wants exact names). The default
// /etc/postfix/main.cf is created when missing (compatibility_level and
// alternate_config_directories listing the eight slot config dirs);
// an existing one only gets the missing directories appended. Postfix
// compares these names with strcmp, so neither prefixes nor globs work, and
// checks the list only when not running as root (mail_conf.c); as root it is
// belt and braces, but postmap -q and postconf still need a default main.cf
// that parses.
//
// Cleanup (t.Cleanup, also on failure) runs `postfix -c DIR stop`, kills by
// pid every process still carrying MAIL_CONFIG=DIR and the smtp-sink it
// started, checks that none remains, and removes the slot directory (kept
// when the test failed, for inspection). A slot left behind by a killed test
// binary is cleaned when it is next taken.
//
// Requirements: root (port 25, mount namespaces, postfix start), unshare
// and mount (util-linux), postfix, postconf, postmap, postqueue, postsuper,
// smtp-sink (Debian package postfix) and swaks; for TestFollowRealJournal,
// journalctl and systemd-journal-remote (package systemd-journal-remote).
// The harness never skips: when something is missing the test fails and
// names it. .ci/run installs them; by hand:
//
//	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
//	DEBIAN_FRONTEND=noninteractive apt-get install -y postfix swaks systemd-journal-remote
//
// Behaviour worth knowing when writing scenarios:
//   - An opportunistic (may) handshake failure defers the first attempt.
//     Postfix retries in plaintext only when the message waited at least
//     minimal_backoff_time before the attempt (smtp_proto.c,
//     PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE, whole seconds), so
//     Flush right after a deferral just defers again; queue_run_delay=2s
//     retries on its own. The retry logs "QUEUEID: Cannot start TLS:
//     handshake failure" before the plaintext status=sent line.
//   - A reused TLS connection logs "... TLS connection reused to ..." and
//     its delivery line has an extra "conn_use=2" field after relay=.
//   - With connection reuse tlsproxy logs its own copy of each
//     "established" line (not of "reused" lines), plus CONNECT/DISCONNECT.
//   - Receivers re-queue what they accept, so the log also has
//     "postfix/discard[pid]: ... relay=none ... status=sent" lines and
//     smtpd/cleanup/qmgr lines with host "mx"; none are outbound deliveries.
//   - The syslog host field is the first label of myhostname: "sender" for
//     the sending side, "mx" for receivers.
//
// Set MAILTLS_E2E_CAPTURE=FILE to append every instance's maillog to FILE
// when it stops; that is how logparse/testdata/real-postfix37.log was made:
//
//	MAILTLS_E2E_CAPTURE=$PWD/logparse/testdata/real-postfix37.log go test -run Smoke ./e2e/
package e2e
