// Command rapport-renderer is Rapport's reference document renderer as a
// plugin: invoices, commercial proposals and contracts as PDF or HTML
// (package plugins/renderer). Run it through a plugins.Manager, not by
// hand. Flags (set them in the plugin's Config.Args):
//
//	-templates DIR   add templates from DIR (NAME.yaml, NAME.html)
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/renderer"
)

func main() {
	dir := flag.String("templates", "", "directory of templates to add (NAME.yaml, NAME.html)")
	flag.Parse()
	r, err := renderer.New(renderer.Options{Dir: *dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	plugins.ServeRenderer(r)
}
