package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/internal/clip"
	"github.com/mailtls/mailtls/store"
)

// DefaultSince is the window start of a report that names none.
const DefaultSince = "7d"

// maxQuery caps the query string: three short parameters need far less.
const maxQuery = 2048

// Handler serves the HTML report at "/": the page `mailtls report
// --format html` writes, for the window of the URL parameters since,
// until and domain (the syntax of --since, --until and --domain). A bad
// parameter gets 400 with a one-line reason; only GET and HEAD are
// allowed. now is the clock that relative windows ("7d") count back from;
// log (nil for none) gets the errors of the store.
func Handler(src Source, now func() time.Time, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			plain(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed (want GET or HEAD)", r.Method))
			return
		}
		win, err := ParseURLQuery(r.URL.RawQuery, now())
		if err != nil {
			plain(w, http.StatusBadRequest, err.Error())
			return
		}
		d, err := Load(r.Context(), src, win)
		if err == nil {
			var b bytes.Buffer
			if err = WriteHTML(&b, d); err == nil {
				h := w.Header()
				h.Set("Content-Type", "text/html; charset=utf-8")
				// frame-ancestors works only in the header, not in <meta>.
				h.Set("Content-Security-Policy", ContentSecurityPolicy+"; frame-ancestors 'none'")
				h.Set("Referrer-Policy", "no-referrer")
				h.Set("X-Content-Type-Options", "nosniff")
				h.Set("Cache-Control", "no-store")
				h.Set("Content-Length", strconv.Itoa(b.Len()))
				w.WriteHeader(http.StatusOK)
				if r.Method != http.MethodHead {
					w.Write(b.Bytes()) //nolint:errcheck // the client went away
				}
				return
			}
		}
		switch {
		case errors.Is(err, store.ErrBadInput):
			plain(w, http.StatusBadRequest, store.BadInputText(err))
		case errors.Is(err, context.Canceled):
			// the client went away
		default:
			log.Error("html report failed", "err", err)
			plain(w, http.StatusInternalServerError, "the report failed; the server log has the reason")
		}
	})
}

// ParseURLQuery reads a report window from URL parameters: since, until
// and domain, each at most once, nothing else.
func ParseURLQuery(raw string, now time.Time) (store.Window, error) {
	if len(raw) > maxQuery {
		return store.Window{}, inputErrorf("query string of %d bytes is too long (at most %d)", len(raw), maxQuery)
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return store.Window{}, inputErrorf("malformed query string (want since=, until= and domain=, URL-encoded)")
	}
	var q Query
	for k, vs := range vals {
		var dst *string
		switch k {
		case "since":
			dst = &q.Since
		case "until":
			dst = &q.Until
		case "domain":
			dst = &q.Domain
		default:
			return store.Window{}, inputErrorf("unknown parameter %q (want since, until or domain)", clip.Line(k, 0))
		}
		if len(vs) > 1 {
			return store.Window{}, inputErrorf("parameter %s given %d times (want it once)", k, len(vs))
		}
		*dst = vs[0] // empty means the default, as for the flags
	}
	return q.Window(now, DefaultSince, "")
}

// plain writes a one-line text answer.
func plain(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, clip.Line(msg, 0))
}
