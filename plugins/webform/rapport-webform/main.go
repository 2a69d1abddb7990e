// Command rapport-webform is Rapport's reference web form and telephony
// connector as a plugin (package plugins/webform). Run it through a
// plugins.Manager with Args:
//
//	-config FILE   the forms, rate limit and PBX token (webform.Config, JSON)
//	-listen ADDR   where browsers post forms and the PBX posts calls
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/webform"
)

func main() {
	config := flag.String("config", "", "JSON configuration file")
	listen := flag.String("listen", "127.0.0.1:8027", "address for forms and calls")
	flag.Parse()
	b, err := os.ReadFile(*config)
	if err != nil {
		fail(err)
	}
	var cfg webform.Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		fail(fmt.Errorf("%s: %w", *config, err))
	}
	c, err := webform.New(cfg)
	if err != nil {
		fail(err)
	}
	stop, err := plugins.ListenHTTP(*listen, c.Handler())
	if err != nil {
		fail(err)
	}
	defer stop()
	plugins.ServeConnector(c)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "rapport-webform:", err)
	os.Exit(1)
}
