package logparse

import (
	"context"
	"sync"
	"time"
)

// A Waker tells an idle follower when to look at its file again. The
// follower calls Wake each time it has read to the end of its file and
// committed what it read, and polls again once the returned channel is
// closed. Production uses a TimedWaker; tests use a TestWaker to run one
// poll at a time without sleeping (the seam of google/mtail's
// internal/waker).
type Waker interface {
	Wake() <-chan struct{}
}

// TimedWaker wakes its caller a fixed interval after each call to Wake.
type TimedWaker struct {
	Interval time.Duration
}

// Wake returns a channel that is closed Interval from now.
func (w TimedWaker) Wake() <-chan struct{} {
	c := make(chan struct{})
	time.AfterFunc(w.Interval, func() { close(c) })
	return c
}

// TestWaker is a Waker driven by a test: the follower sleeps in Wake until
// the test calls Poll, and Poll returns only once the follower has finished
// that poll (read to EOF, committed) and is back in Wake. Use one TestWaker
// per Follower.Run.
type TestWaker struct {
	mu      sync.Mutex
	waiting chan struct{} // returned by the last Wake and not yet released
	calls   uint64        // number of Wake calls so far
	changed chan struct{} // closed and replaced at every Wake call
}

// NewTestWaker returns a TestWaker whose follower has not yet called Wake.
func NewTestWaker() *TestWaker {
	return &TestWaker{changed: make(chan struct{})}
}

// Wake records that the follower is idle and returns the channel that Poll
// closes.
func (w *TestWaker) Wake() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := make(chan struct{})
	w.waiting = c
	w.calls++
	close(w.changed)
	w.changed = make(chan struct{})
	return c
}

// WaitIdle blocks until the follower is waiting in Wake (it has finished its
// first or latest poll), or ctx is done.
func (w *TestWaker) WaitIdle(ctx context.Context) error {
	for {
		w.mu.Lock()
		idle, ch := w.waiting != nil, w.changed
		w.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Poll waits until the follower is idle, wakes it, and waits until it is
// idle again: when Poll returns nil, the follower has run one whole poll
// that started after Poll was called, and has committed what it read.
func (w *TestWaker) Poll(ctx context.Context) error {
	if err := w.WaitIdle(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	close(w.waiting)
	w.waiting = nil
	w.mu.Unlock()
	return w.WaitIdle(ctx)
}

// Calls returns how often the follower has called Wake.
func (w *TestWaker) Calls() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls
}
