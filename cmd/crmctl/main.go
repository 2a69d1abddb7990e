// Command crmctl works with a Rapport database from the command line.
//
//	crmctl [-db rapport.db] [-tenant default] contacts add -first Ada -last Lovelace -email ada@example.com -tags vip,b2b
//	crmctl [-db rapport.db] [-tenant default] contacts list [-tag vip | -owner u1] [-limit 50]
//	crmctl [-db rapport.db] [-tenant default] contacts get ID
//	crmctl [-db rapport.db] [-tenant default] import contacts|accounts|products|orders FILE [--map col=field]... [--format csv|jsonl] [--currency GBP] [--refund-prefix C] [--stop-on-error]
//	crmctl [-db rapport.db] [-tenant default] export contacts|accounts|products|orders [-o FILE] [--format csv|jsonl]
//	crmctl [-db rapport.db] [-tenant default] report funnel|stages|overdue|lost|plan|forecast|commission|leads|campaigns|products|rfm|clv|cohorts|nps [flags] [--format table|csv|json|html|svg]
//	crmctl rules test PATH...
//	crmctl rules check FILE...
//	crmctl rules eval -rule EXPR [-json FILE] [-now TIME]
//	crmctl plugins list|check [-dir DIR] [NAME...]
//	crmctl automations check FILE...
//	crmctl automations builtin [NAME]
//	crmctl [-db rapport.db] [-tenant default] automations save FILE
//	crmctl [-db rapport.db] [-tenant default] automations simulate -event TYPE -collection COLL -id ID [-from STAGE] [-to STAGE] [-segment NAME] [-changed F,...]
//	crmctl [-db rapport.db] check
//	crmctl -db postgres://user@host/db [-schema rapport] migrate
//
// -db takes a bbolt file or a postgres:// URL (every command but check
// works on both).
//
// Output is JSON, one record per line. An import prints a summary on
// standard output, bad rows (file:line: why) on standard error, and its
// progress on standard error when that is a terminal. Exit codes: 0 done,
// 1 failed, 2 usage, 3 imported with some rows skipped.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/storage/bolt"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: crmctl [-db FILE|postgres://URL] [-schema NAME] [-tenant NAME] COMMAND
commands:
  contacts add -first F -last L -email E [-phone P] [-owner O] [-tags a,b]
  contacts list [-tag T | -owner O] [-limit N]
  contacts get ID
  import contacts|accounts|products|orders FILE [--map col=field]... [--format csv|jsonl]
         [--currency C] [--refund-prefix P] [--stop-on-error] [--batch N]
  export contacts|accounts|products|orders [-o FILE] [--format csv|jsonl]
  report funnel|stages|overdue|lost|plan|forecast|commission|leads|campaigns|products|rfm|clv|cohorts|nps
         [flags] [--format table|csv|json|html|svg]   (crmctl report, without a kind, lists the flags)
  rules test PATH...  |  rules check FILE...  |  rules eval -rule EXPR [-json FILE] [-now T]
               test loyalty fixtures, validate program and segment files, evaluate an expression
  plugins list|check [-dir DIR] [NAME...]
               list the approved plugins of a directory, or start and check them
  automations check FILE...  |  automations builtin [NAME]  |  automations save FILE
  automations simulate -event TYPE -collection COLL -id ID [-from STAGE] [-to STAGE] [-segment NAME] [-changed F,...]
               validate automation files, list or print the ready-made sets, make a file the
               tenant's automations, show what they would do for an event (writes nothing)
  check        verify the consistency of the database file
  migrate      apply the PostgreSQL migrations (engines also do on open) and print the version
exit codes: 0 done, 1 failed, 2 usage, 3 imported with some rows skipped`

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crmctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usage) }
	db := fs.String("db", "rapport.db", "bbolt database file, or postgres://... URL")
	schema := fs.String("schema", "rapport", "PostgreSQL schema of the store (with a postgres:// -db)")
	tenant := fs.String("tenant", "default", "tenant to work in")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	var err error
	d := database{path: *db, schema: *schema}
	switch rest[0] {
	case "check":
		if d.postgres() {
			err = errors.New("check verifies a bbolt file; PostgreSQL has its own tools (amcheck, pg_dump)")
			break
		}
		err = check(*db, stdout)
	case "migrate":
		err = migrate(ctx, d, stdout)
	case "contacts":
		err = contacts(ctx, d, *tenant, rest[1:], stdout, stderr)
	case "import":
		err = importCmd(ctx, d, *tenant, rest[1:], stdout, stderr)
	case "export":
		err = exportCmd(ctx, d, *tenant, rest[1:], stdout, stderr)
	case "report":
		err = reportCmd(ctx, d, *tenant, rest[1:], stdout, stderr)
	case "rules":
		err = rulesCmd(rest[1:], stdin, stdout, stderr)
	case "plugins":
		err = pluginsCmd(ctx, rest[1:], stdout, stderr)
	case "automations":
		err = automationsCmd(ctx, d, *tenant, rest[1:], stdout, stderr)
	default:
		err = fmt.Errorf("unknown command %q\n%s", rest[0], usage)
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if errors.Is(err, errPartial) {
		return 3
	}
	if errors.Is(err, errFailed) {
		return 1 // the command printed what failed
	}
	if err != nil {
		fmt.Fprintln(stderr, "crmctl:", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

func check(path string, stdout io.Writer) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	s, err := bolt.Open(path, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		return fmt.Errorf("%s is damaged: %w", path, err)
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return nil
}

func contacts(ctx context.Context, db database, tenant string, args []string, stdout, stderr io.Writer) (err error) {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errUsage
	}
	engine, closeDB, err := db.open(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeDB()) }()
	recs := engine.Tenant(tenant).Contacts()
	enc := json.NewEncoder(stdout)

	fs := flag.NewFlagSet("contacts "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "add":
		var c crm.Contact
		var tags string
		fs.StringVar(&c.FirstName, "first", "", "first name")
		fs.StringVar(&c.LastName, "last", "", "last name")
		fs.StringVar(&c.Email, "email", "", "email address")
		fs.StringVar(&c.Phone, "phone", "", "phone number")
		fs.StringVar(&c.Owner, "owner", "", "owner user ID")
		fs.StringVar(&tags, "tags", "", "comma-separated tags")
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		if tags != "" {
			c.Tags = strings.Split(tags, ",")
		}
		created, err := recs.Create(ctx, c)
		if err != nil {
			return err
		}
		return enc.Encode(created)
	case "list":
		tag := fs.String("tag", "", "only contacts with this tag")
		owner := fs.String("owner", "", "only contacts of this owner")
		limit := fs.Int("limit", 100, "page size")
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		opts := crm.ListOptions{Limit: *limit}
		switch {
		case *tag != "" && *owner != "":
			return errors.New("use -tag or -owner, not both")
		case *tag != "":
			opts.By, opts.Value = "tag", *tag
		case *owner != "":
			opts.By, opts.Value = "owner", *owner
		}
		for {
			page, err := recs.List(ctx, opts)
			if err != nil {
				return err
			}
			for _, c := range page.Items {
				if err := enc.Encode(c); err != nil {
					return err
				}
			}
			if page.Next == "" {
				return nil
			}
			opts.Cursor = page.Next
		}
	case "get":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "usage: crmctl contacts get ID")
			return errUsage
		}
		c, err := recs.Get(ctx, args[1])
		if err != nil {
			return err
		}
		return enc.Encode(c)
	default:
		fmt.Fprintf(stderr, "unknown contacts command %q\n%s\n", args[0], usage)
		return errUsage
	}
}
