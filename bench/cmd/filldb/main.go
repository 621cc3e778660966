// Command filldb fills a mailtls database with the synthetic deliveries of
// gen.Deliveries, through the store's bulk writer (as mailtls import
// stores), for the report-time benchmarks in bench/run.sh.
//
//	go run ./bench/cmd/filldb -db /tmp/mailtls-bench/rows-1000000.db -n 1000000 -days 90
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/store"
)

func main() {
	db := flag.String("db", "", "database `PATH` to fill (created if missing)")
	n := flag.Int("n", 1_000_000, "number of deliveries to add")
	days := flag.Int("days", 90, "spread the deliveries over this many days before now")
	seed := flag.Int64("seed", 1, "random seed")
	flag.Parse()
	if *db == "" {
		fmt.Fprintln(os.Stderr, "filldb: -db is required")
		os.Exit(2)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, *db)
	if err != nil {
		fmt.Fprintln(os.Stderr, "filldb:", err)
		os.Exit(1)
	}
	t0 := time.Now()
	err = fill(ctx, st, *n, *days, *seed)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "filldb:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "filldb: %d deliveries over %d days in %s\n", *n, *days, time.Since(t0).Round(time.Millisecond))
}

// fill adds n deliveries over the days before now to st.
func fill(ctx context.Context, st *store.Store, n, days int, seed int64) error {
	bk := st.Bulk()
	err := gen.Deliveries(n, days, seed, time.Now(), 100_000, func(ds []delivery.Delivery) error {
		b, err := bk.PrepareBatch(ds)
		if err != nil {
			return err
		}
		_, err = bk.Add(ctx, b)
		return err
	})
	if err == nil {
		err = bk.Commit(ctx)
	}
	return errors.Join(err, bk.Close())
}
