// Package tcpfwd is a loopback TCP forwarder that a fault test can cut
// and restore: the network between mailtls and its PostgreSQL server
// going away and coming back, without stopping the server.
//
// A cut is a black hole, as a lost route or a pulled cable is, not a
// refusal: the connections stay open on both ends, but nothing sent on
// them arrives, and new connections are accepted and then hear nothing,
// so a client finds out only through its own timeouts. Restore closes
// every connection that lived through the cut (bytes were lost on them;
// the peers' TCP would give up on them in time) and forwards new ones
// again.
package tcpfwd

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Forwarder accepts connections on a loopback address and forwards each
// to a new connection from Dial.
type Forwarder struct {
	ln   net.Listener
	dial func() (net.Conn, error)

	mu     sync.Mutex
	cut    bool
	closed bool
	conns  map[*link]struct{}
	wg     sync.WaitGroup
}

// link is one forwarded connection: the client's and the server's ends.
type link struct {
	client, server net.Conn
	// dead is set when the link saw a cut: nothing is forwarded on it
	// any more.
	dead bool
}

// Listen starts a forwarder on addr ("127.0.0.1:0" for any free port) to
// the connections that dial makes.
func Listen(addr string, dial func() (net.Conn, error)) (*Forwarder, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{ln: ln, dial: dial, conns: map[*link]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr is the address the forwarder listens on, host:port.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

func (f *Forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		l := &link{client: c, dead: f.cut}
		f.conns[l] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(l)
	}
}

// serve dials the server for l (unless l was born in a cut) and copies
// both ways until either end closes.
func (f *Forwarder) serve(l *link) {
	defer f.wg.Done()
	defer f.drop(l)
	f.mu.Lock()
	dead := l.dead
	f.mu.Unlock()
	if dead {
		// Accepted in a cut: hear the client out, answer nothing.
		_, _ = io.Copy(io.Discard, l.client)
		return
	}
	s, err := f.dial()
	if err != nil {
		return
	}
	f.mu.Lock()
	l.server = s
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { f.pipe(l, s, l.client); done <- struct{}{} }()
	go func() { f.pipe(l, l.client, s); done <- struct{}{} }()
	<-done
	l.client.Close()
	s.Close()
	<-done
}

// pipe copies src to dst, dropping what it reads once l is dead.
func (f *Forwarder) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			dead := l.dead
			f.mu.Unlock()
			if !dead {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *Forwarder) drop(l *link) {
	f.mu.Lock()
	delete(f.conns, l)
	f.mu.Unlock()
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}

// Cut stops all forwarding: the open connections stay open and carry
// nothing, and new ones are accepted and carry nothing.
func (f *Forwarder) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = true
	for l := range f.conns {
		l.dead = true
	}
}

// Restore ends a cut: the connections that saw it are closed, and new
// connections are forwarded again. It returns how many it closed.
func (f *Forwarder) Restore() int {
	f.mu.Lock()
	var dead []*link
	for l := range f.conns {
		if l.dead {
			dead = append(dead, l)
		}
	}
	f.cut = false
	f.mu.Unlock()
	for _, l := range dead {
		l.client.Close()
		if s := f.server(l); s != nil {
			s.Close()
		}
	}
	return len(dead)
}

func (f *Forwarder) server(l *link) net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return l.server
}

// Close stops listening, closes every connection and waits for the
// forwarder's goroutines. It is safe to call more than once.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	ls := make([]*link, 0, len(f.conns))
	for l := range f.conns {
		ls = append(ls, l)
	}
	f.mu.Unlock()
	err := f.ln.Close()
	for _, l := range ls {
		l.client.Close()
		if s := f.server(l); s != nil {
			s.Close()
		}
	}
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
