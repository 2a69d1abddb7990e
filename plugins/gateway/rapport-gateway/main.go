// Command rapport-gateway is Rapport's reference HTTP gateway connector
// for SMS and messengers as a plugin (package plugins/gateway). Run it
// through a plugins.Manager with Args:
//
//	-config FILE     the gateway's JSON configuration (gateway.Config)
//	-listen ADDR     where the provider posts callbacks (optional)
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/gateway"
)

func main() {
	config := flag.String("config", "", "JSON configuration file")
	listen := flag.String("listen", "", "address for the provider's callbacks, e.g. 127.0.0.1:8026")
	flag.Parse()
	cfg, err := gateway.LoadConfig(*config)
	if err != nil {
		fail(err)
	}
	c, err := gateway.New(cfg)
	if err != nil {
		fail(err)
	}
	defer c.Close()
	if *listen != "" {
		stop, err := plugins.ListenHTTP(*listen, c.CallbackHandler())
		if err != nil {
			fail(err)
		}
		defer stop()
	}
	plugins.ServeConnector(c)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "rapport-gateway:", err)
	os.Exit(1)
}
