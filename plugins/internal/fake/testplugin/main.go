// Command testplugin serves the fake renderer or connector (its first
// argument says which) as a plugin process for the plugins package's
// tests. INBOUND_EVENTS=n queues n form submissions in the connector's
// inbox.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/internal/fake"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testplugin renderer|connector")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "renderer":
		plugins.ServeRenderer(fake.Renderer{})
	case "connector":
		c := fake.NewConnector()
		if n, _ := strconv.Atoi(os.Getenv("INBOUND_EVENTS")); n > 0 {
			for i := range n {
				_, _ = c.Inbox.Post(plugins.InboundEvent{ID: fmt.Sprintf("ev-%d", i),
					Form: &plugins.FormSubmission{Form: "contact-us", Fields: map[string]string{"n": strconv.Itoa(i)}}})
			}
		}
		plugins.ServeConnector(c)
	default:
		fmt.Fprintf(os.Stderr, "testplugin: unknown kind %q\n", os.Args[1])
		os.Exit(2)
	}
}
