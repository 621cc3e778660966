package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"strconv"

	"github.com/mailtls/mailtls/policyd"
)

// listenSpec is one listener to open.
type listenSpec struct{ proto, network, addr string }

// listenSpecs are the listeners cfg asks for; TCP ones only on loopback
// unless AllowRemote.
func listenSpecs(cfg Config) ([]listenSpec, error) {
	var specs []listenSpec
	for _, s := range []struct{ flag, addr, proto, network string }{
		{"socketmap", cfg.Socketmap, "socketmap", "tcp"}, {"tcp", cfg.TCP, "tcp_table", "tcp"},
		{"unix", cfg.Unix, "socketmap", "unix"}, {"tcp-unix", cfg.TCPUnix, "tcp_table", "unix"},
	} {
		if s.addr != "" {
			if s.network == "tcp" && !cfg.AllowRemote {
				if err := checkLoopback(s.flag, s.addr); err != nil {
					return nil, err
				}
			}
			specs = append(specs, listenSpec{s.proto, s.network, s.addr})
		}
	}
	if len(specs) == 0 {
		return nil, configErrorf("no listener configured (set --socketmap, --tcp, --unix or --tcp-unix)")
	}
	return specs, nil
}

// listen opens every listener (in parent) and serves it until ctx ends;
// on an error, those opened are closed.
func (d *Daemon) listen(parent, ctx context.Context, specs []listenSpec, mode fs.FileMode, group string) error {
	var lns []net.Listener
	fail := func(err error) error {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	for _, sp := range specs {
		ln, err := policyd.Listen(parent, sp.network, sp.addr, mode)
		if err != nil {
			return fail(fmt.Errorf("listen %s %s:%s: %w", sp.proto, sp.network, sp.addr, err))
		}
		lns = append(lns, ln)
		if sp.network == "unix" && group != "" {
			if err := chgrp(sp.addr, group); err != nil {
				return fail(err)
			}
		}
		d.addrs = append(d.addrs, fmt.Sprintf("%s=%s:%s", sp.proto, sp.network, ln.Addr()))
		serve := d.srv.ServeSocketmap
		if sp.proto == "tcp_table" {
			serve = d.srv.ServeTCPTable
		}
		d.wg.Add(1)
		go func(ln net.Listener, proto string) {
			defer d.wg.Done()
			if err := serve(ctx, ln); err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				d.log.Error("listener failed", "proto", proto, "addr", ln.Addr().String(), "err", err)
			}
		}(ln, sp.proto)
	}
	return nil
}

func checkLoopback(flag, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return configErrorf("--%s %q: %v (want HOST:PORT, e.g. 127.0.0.1:8470)", flag, addr, err)
	}
	if !policyd.IsLoopbackHost(host) {
		return configErrorf("--%s %q is not a loopback address; Postfix policy needs no remote access (pass --allow-remote to override)", flag, addr)
	}
	return nil
}

// parseMode parses the octal mode of the unix sockets.
func parseMode(s string) (fs.FileMode, error) {
	var m uint32
	if _, err := fmt.Sscanf(s, "%o", &m); err != nil || m > 0o777 {
		return 0, configErrorf("invalid --unix-mode %q (want an octal mode such as 0660)", s)
	}
	return fs.FileMode(m), nil
}

// chgrp gives a unix socket to a group, so that Postfix's smtp(8) (user
// postfix) can connect to a 0660 socket.
func chgrp(path, group string) error {
	g, err := user.LookupGroup(group)
	if err != nil {
		return configErrorf("--unix-group %q: %v", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return configErrorf("--unix-group %q: bad gid %q", group, g.Gid)
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("--unix-group %s: %w (is mailtls a member of the group?)", group, err)
	}
	return nil
}
