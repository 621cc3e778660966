package store

import (
	"context"
	"net"
	"syscall"
	"time"
)

// A TCP connection to PostgreSQL whose network goes silent (a firewall
// that drops packets, a link cut without a reset) would otherwise block
// its statement until the kernel gives up, some fifteen minutes, with
// nothing logged and the follower not even failing. So connections send
// keepalives when idle, and a write not acknowledged within
// pgUserTimeout fails (TCP_USER_TIMEOUT): the statement errors, the
// follower logs, retries and shows as failing, and the daemon logs that it
// serves its last snapshot. Unix sockets have no such failure.
const (
	pgKeepAlive   = 10 * time.Second // idle time before the first probe, and between probes
	pgUserTimeout = 20 * time.Second
)

// pgDialer is the dialer of every PostgreSQL connection.
var pgDialer = &net.Dialer{
	Timeout: 30 * time.Second,
	KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: pgKeepAlive, Interval: pgKeepAlive, Count: 2,
	},
	Control: func(network, _ string, c syscall.RawConn) error {
		if network != "tcp" && network != "tcp4" && network != "tcp6" {
			return nil
		}
		return setUserTimeout(c, pgUserTimeout)
	},
}

func pgDial(ctx context.Context, network, addr string) (net.Conn, error) {
	return pgDialer.DialContext(ctx, network, addr)
}
