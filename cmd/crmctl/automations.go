package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
)

const automationsUsage = `usage:
  crmctl automations check FILE...   load each automation file, compile its conditions and
                                     schedules and check its templates; print every problem
  crmctl automations builtin [NAME]  list the ready-made sets, or print one's YAML to adapt
  crmctl [-db DB] [-tenant T] automations save FILE
                                     make FILE the tenant's automations (replacing its set);
                                     crmctl has no plugins, so message and document actions
                                     are refused
  crmctl [-db DB] [-tenant T] automations simulate -event TYPE -collection COLL -id ID
         [-from STAGE] [-to STAGE] [-segment NAME] [-changed FIELD,...]
                                     show what the tenant's automations would do for the
                                     event about the record as it is now; writes nothing
COLL is the record's collection: contacts, deals, leads, accounts, contracts, cases, orders.`

func automationsCmd(ctx context.Context, db database, tenant string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, automationsUsage)
		return errUsage
	}
	switch args[0] {
	case "check":
		return automationsCheck(args[1:], stdout, stderr)
	case "builtin":
		return automationsBuiltin(args[1:], stdout, stderr)
	case "save":
		return automationsSave(ctx, db, tenant, args[1:], stdout, stderr)
	case "simulate":
		return automationsSimulate(ctx, db, tenant, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown automations command %q\n%s\n", args[0], automationsUsage)
	return errUsage
}

// loadAutomations reads, compiles and checks (templates included) one
// automation file. Its problems are an *automation.DefinitionError.
func loadAutomations(path string) (*automation.Set, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	set, err := automation.Load(path, data, nil)
	if err != nil {
		return nil, err
	}
	if err := crm.CheckAutomations(set); err != nil {
		return nil, err
	}
	return set, nil
}

// printProblems writes the problems of err one per line
// ("file:line: automation NAME: message"), or err itself, naming the
// file, when it is not a definition error.
func printProblems(w io.Writer, path string, err error) {
	var de *automation.DefinitionError
	if !errors.As(err, &de) {
		if !strings.Contains(err.Error(), path) {
			err = fmt.Errorf("%s: %w", path, err)
		}
		fmt.Fprintln(w, err)
		return
	}
	for _, p := range de.Problems {
		if p.File == "" {
			p.File = path
		}
		fmt.Fprintln(w, p)
	}
}

func automationsCheck(files []string, stdout, stderr io.Writer) error {
	if len(files) == 0 {
		fmt.Fprintln(stderr, automationsUsage)
		return errUsage
	}
	bad := false
	for _, f := range files {
		set, err := loadAutomations(f)
		if err != nil {
			bad = true
			printProblems(stdout, f, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: %d automations OK\n", f, len(set.Automations))
	}
	if bad {
		return errFailed
	}
	return nil
}

func automationsBuiltin(args []string, stdout, stderr io.Writer) error {
	switch len(args) {
	case 0:
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tAUTOMATIONS\tWHAT")
		for _, name := range automation.Builtins() {
			src, err := automation.BuiltinSource(name)
			if err != nil {
				return err
			}
			set, err := automation.Load(name+".yaml", src, nil)
			if err != nil {
				return fmt.Errorf("ready-made set %s: %w", name, err)
			}
			fmt.Fprintf(w, "%s\t%d\t%s\n", name, len(set.Automations), headerComment(src))
		}
		return w.Flush()
	case 1:
		src, err := automation.BuiltinSource(args[0])
		if err != nil {
			return err
		}
		_, err = stdout.Write(src)
		return err
	}
	fmt.Fprintln(stderr, automationsUsage)
	return errUsage
}

// headerComment returns the comment lines that open a YAML file, joined
// into one line.
func headerComment(src []byte) string {
	var words []string
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "#")
		if !ok {
			break
		}
		words = append(words, strings.Fields(line)...)
	}
	return strings.Join(words, " ")
}

func automationsSave(ctx context.Context, db database, tenant string, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) != 1 {
		fmt.Fprintln(stderr, automationsUsage)
		return errUsage
	}
	path := args[0]
	set, err := loadAutomations(path)
	if err != nil {
		printProblems(stderr, path, err)
		return errFailed
	}
	engine, closeDB, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeDB()) }()
	if err := engine.Tenant(tenant).Automations().Save(ctx, set); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d automations saved for tenant %s\n", path, len(set.Automations), tenant)
	return nil
}

func automationsSimulate(ctx context.Context, db database, tenant string, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("automations simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, automationsUsage) }
	var ev crm.Event
	var changed string
	fs.StringVar(&ev.Type, "event", "", "event type, such as contact.created or deal.stage_changed")
	fs.StringVar(&ev.Collection, "collection", "", "collection of the record: contacts, deals, leads, ...")
	fs.StringVar(&ev.ID, "id", "", "ID of the record (the contact, for segment.entered and segment.left)")
	fs.StringVar(&ev.From, "from", "", "stage the record left, for *.stage_changed")
	fs.StringVar(&ev.To, "to", "", "stage the record enters, for *.stage_changed (default: its stage now)")
	fs.StringVar(&ev.Segment, "segment", "", "segment, for segment.entered and segment.left")
	fs.StringVar(&changed, "changed", "", "comma-separated fields an update changed (event.changed)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if ev.Type == "" || ev.Collection == "" || ev.ID == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, automationsUsage)
		return errUsage
	}
	if changed != "" {
		ev.Changed = strings.Split(changed, ",")
	}
	// "deal" for "deals": the singular is what triggers call entities.
	if plural, ok := map[string]string{"contact": "contacts", "account": "accounts", "lead": "leads", "deal": "deals",
		"contract": "contracts", "case": "cases", "order": "orders", "activity": "activities"}[ev.Collection]; ok {
		ev.Collection = plural
	}
	if err := db.mustExist(); err != nil {
		return err
	}
	engine, closeDB, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeDB()) }()
	t := engine.Tenant(tenant)
	// A tenant without a set simulates to nothing; say so instead.
	if _, err := t.Automations().Get(ctx); err != nil {
		if errors.Is(err, crm.ErrNotFound) {
			return fmt.Errorf("tenant %s has no automations (crmctl automations save FILE)", tenant)
		}
		return err
	}
	sims, err := t.SimulateAutomations(ctx, ev)
	if err != nil {
		return err
	}
	if len(sims) == 0 {
		fmt.Fprintf(stdout, "no automation takes up %s\n", ev.Type)
		return nil
	}
	for _, s := range sims {
		switch {
		case !s.Ran:
			fmt.Fprintf(stdout, "%s: would not run: %s\n", s.Automation, s.Reason)
		case s.Reason != "":
			fmt.Fprintf(stdout, "%s: would fail: %s\n", s.Automation, s.Reason)
		default:
			fmt.Fprintf(stdout, "%s: would run\n", s.Automation)
		}
		for _, a := range s.Actions {
			fmt.Fprintf(stdout, "  %s\n", a)
		}
	}
	return nil
}
