// Command quickstart runs Rapport's main job end to end on the embedded
// bbolt default: it opens an engine, subscribes to events, creates an
// account and contacts, updates and lists them, shows how bad input and
// concurrent edits are refused, then closes the engine, reopens the same
// file and reads everything back.
//
//	go run ./examples/quickstart            # in a temporary directory, removed afterwards
//	go run ./examples/quickstart -db my.db  # keep the database file
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rapportcrm/rapport/crm"
)

func main() {
	db := flag.String("db", "", "bbolt file to use (default: a temporary file, removed afterwards)")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *db); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer, path string) error {
	if path == "" {
		dir, err := os.MkdirTemp("", "rapport-quickstart")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "rapport.db")
	} else if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists; the quickstart starts from an empty database: remove it or pass another -db", path)
	}
	fmt.Fprintf(out, "opening %s\n", path)
	engine, err := crm.Open(ctx, crm.Options{Path: path})
	if err != nil {
		return err
	}
	defer engine.Close()

	// Subscriptions get every event at least once, in commit order.
	var mu sync.Mutex
	var seen []string
	delivered := make(chan struct{}, 100)
	err = engine.Subscribe(crm.Subscription{
		Name: "quickstart-log",
		Handler: func(_ context.Context, ev crm.Event) error {
			mu.Lock()
			seen = append(seen, fmt.Sprintf("#%d %-15s %s changed=%v", ev.Seq, ev.Type, ev.ID, ev.Changed))
			mu.Unlock()
			delivered <- struct{}{}
			return nil
		},
	})
	if err != nil {
		return err
	}

	acme, err := engine.Accounts().Create(ctx, crm.Account{
		Name: "Acme Corporation", Domain: "https://www.acme.example/", Type: crm.B2B,
		Industry: "Manufacturing", Employees: 250,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "created account %s %q (domain stored as %s)\n", acme.ID, acme.Name, acme.Domain)

	people, err := engine.Contacts().CreateMany(ctx, []crm.Contact{
		{FirstName: "Wile E.", LastName: "Coyote", Email: "Wile@Acme.example", Phone: "+1 (555) 010-0001", AccountID: acme.ID,
			Meta: crm.Meta{Owner: "sales-1", Tags: []string{"vip", "decision-maker"}}},
		{FirstName: "Road", LastName: "Runner", Email: "beep@desert.example", Meta: crm.Meta{Owner: "sales-2", Tags: []string{"newsletter"}}},
		{FirstName: "Marvin", LastName: "Martian", Email: "marvin@mars.example", Meta: crm.Meta{Owner: "sales-1", Tags: []string{"vip"}}},
	})
	if err != nil {
		return err
	}
	for _, c := range people {
		fmt.Fprintf(out, "created contact %s %-15s %-22s phone=%q tags=%v\n", c.ID, c.Name(), c.Email, c.Phone, c.Tags)
	}

	wile := people[0]
	wile.Title = "Chief Genius"
	wile.Tags = append(wile.Tags, "renewal-2027")
	wile, err = engine.Contacts().Update(ctx, wile)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "updated %s: title %q, version %d\n", wile.Name(), wile.Title, wile.Version)

	vips, err := engine.Contacts().List(ctx, crm.ListOptions{By: "tag", Value: "vip"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "contacts tagged vip: %d\n", len(vips.Items))
	for _, c := range vips.Items {
		fmt.Fprintf(out, "  %s <%s> owner %s\n", c.Name(), c.Email, c.Owner)
	}

	// Bad input is refused with every bad field named, and nothing is written.
	_, err = engine.Contacts().Create(ctx, crm.Contact{Email: "wile-at-acme", Phone: "call me maybe"})
	var ve *crm.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("expected a validation error, got %v", err)
	}
	fmt.Fprintf(out, "refused a bad contact: %v\n", err)

	// An edit based on a stale version is refused instead of overwriting.
	stale := people[0] // version 1; the stored contact is at version 2
	stale.Title = "Roadkill"
	_, err = engine.Contacts().Update(ctx, stale)
	if !errors.Is(err, crm.ErrConflict) {
		return fmt.Errorf("expected a conflict, got %v", err)
	}
	fmt.Fprintln(out, "refused a stale update: version conflict")

	// Every write above produced one event: 1 account + 3 contacts + 1 update.
	const events = 5
	timeout := time.After(10 * time.Second)
	for range events {
		select {
		case <-delivered:
		case <-timeout:
			return errors.New("events were not delivered within 10s")
		}
	}
	mu.Lock()
	fmt.Fprintf(out, "events delivered to the subscription: %d\n", len(seen))
	for _, s := range seen {
		fmt.Fprintf(out, "  %s\n", s)
	}
	mu.Unlock()

	if err := engine.Close(); err != nil {
		return err
	}
	engine, err = crm.Open(ctx, crm.Options{Path: path})
	if err != nil {
		return err
	}
	defer engine.Close()
	again, err := engine.Contacts().Get(ctx, wile.ID)
	if err != nil {
		return err
	}
	all, err := engine.Contacts().List(ctx, crm.ListOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "reopened %s: %d contacts, %s is %q at version %d\n", filepath.Base(path), len(all.Items), again.Name(), again.Title, again.Version)
	fmt.Fprintln(out, "done")
	return engine.Close()
}
