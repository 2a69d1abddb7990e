package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/rapportcrm/rapport/plugins"
)

const pluginsUsage = `usage:
  crmctl plugins list [-dir DIR]           list the plugins of DIR (rapport-renderer-*,
                                           rapport-connector-*, approved in DIR/SHA256SUMS)
  crmctl plugins check [-dir DIR] [NAME...] start each plugin (or those named), check its
                                           checksum, ping it and ask what it serves
DIR defaults to $RAPPORT_PLUGINS_DIR, then ./plugins.`

func pluginsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, pluginsUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("plugins "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultPluginsDir(), "plugin directory")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each plugin's start and check")
	if err := fs.Parse(args[1:]); err != nil {
		return errUsage
	}
	configs, discoverErr := plugins.Discover(*dir)
	switch args[0] {
	case "list":
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tKIND\tSHA256\tPATH")
		for _, c := range configs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Name, c.Kind, c.SHA256[:16]+"…", c.Path)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return discoverErr
	case "check":
		if discoverErr != nil {
			return discoverErr
		}
		return pluginsCheck(ctx, configs, fs.Args(), *timeout, stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown plugins command %q\n%s\n", args[0], pluginsUsage)
	return errUsage
}

func defaultPluginsDir() string {
	if d := os.Getenv("RAPPORT_PLUGINS_DIR"); d != "" {
		return d
	}
	return "plugins"
}

func pluginsCheck(ctx context.Context, configs []plugins.Config, names []string, timeout time.Duration, stdout, stderr io.Writer) error {
	m, err := plugins.NewManager(plugins.Options{CallTimeout: timeout, StartTimeout: timeout,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, configs...)
	if err != nil {
		return err
	}
	defer m.Close()
	if len(names) == 0 {
		for _, c := range configs {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("no plugins to check")
	}
	failed := 0
	for _, n := range names {
		start := time.Now()
		st, err := m.Check(ctx, n)
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "%s: FAIL: %v\n", n, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok (%s, pid %d, %v): %s\n", n, st.Kind, st.PID, time.Since(start).Round(time.Millisecond), st.Detail)
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d of %d plugins failed\n", failed, len(names))
		return errFailed
	}
	return nil
}
