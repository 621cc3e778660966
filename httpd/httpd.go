// Package httpd is mailtls's one HTTP listener: Prometheus metrics on
// /metrics, the HTML report on / and a health check on /healthz.
//
// Every request is read-only (GET or HEAD; others get 405), carries no
// body, and has bounded headers, read and write times, and a bounded
// number of open connections. A query parameter that a path does not take,
// or that does not parse, gets 400 and a one-line reason.
package httpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/netutil"

	"github.com/mailtls/mailtls/internal/clip"
)

// Limits of the listener.
const (
	MaxConns          = 32
	MaxHeaderBytes    = 8 << 10
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = time.Minute // a report over a long window takes a while
	IdleTimeout       = time.Minute
)

// Options say what the listener serves.
type Options struct {
	// Metrics serves /metrics; nil leaves it unmounted (404).
	Metrics http.Handler
	// Index serves / (the HTML report, report.Handler, which parses its
	// ?since=, &until= and &domain=). Other query parameters, repeated
	// ones and other methods are refused before it. nil leaves /
	// unmounted (404).
	Index http.Handler
	// Health reports whether the process does its job; /healthz answers
	// 200 "ok" when it returns nil, else 503 and the error. nil: always ok.
	Health func() error
	// Logger receives listener errors; nil discards them.
	Logger *slog.Logger
}

// Server is a running listener.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Listen opens addr (host:port) and starts serving.
func Listen(ctx context.Context, addr string, o Options) (*Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("httpd: %w", err)
	}
	return Serve(ln, o), nil
}

// Serve serves on ln until Shutdown.
func Serve(ln net.Listener, o Options) *Server {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           Handler(o),
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			WriteTimeout:      WriteTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:   netutil.LimitListener(ln, MaxConns),
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(s.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting, lets requests in progress finish until ctx
// ends, then closes. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// Handler returns the listener's routes, for tests and embedding.
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	if o.Metrics != nil {
		mux.Handle("/metrics", only(nil, o.Metrics))
	}
	mux.Handle("/healthz", only(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if o.Health != nil {
			if err := o.Health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, clip.Line(err.Error(), 200))
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})))
	if o.Index != nil {
		// The page parses and checks its own window (report.Handler).
		mux.Handle("/{$}", only([]string{"since", "until", "domain"}, o.Index))
	}
	return mux
}

// only wraps h: GET and HEAD only, no request body, and only the query
// parameters in params, each at most once.
func only(params []string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method "+clip.Line(r.Method, 200)+" not allowed (this listener is read-only: GET or HEAD)", http.StatusMethodNotAllowed)
			return
		}
		if r.ContentLength > 0 {
			http.Error(w, "a request body is not accepted", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 0)
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			badRequest(w, "malformed query string: "+err.Error())
			return
		}
		for k, v := range q {
			if !slices.Contains(params, k) {
				want := "none"
				if len(params) > 0 {
					want = strings.Join(params, ", ")
				}
				badRequest(w, fmt.Sprintf("unknown query parameter %q on %s (want %s)", k, r.URL.Path, want))
				return
			}
			if len(v) > 1 {
				badRequest(w, fmt.Sprintf("query parameter %q given %d times (want it once)", k, len(v)))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func badRequest(w http.ResponseWriter, msg string) {
	http.Error(w, clip.Line(msg, 200), http.StatusBadRequest)
}
