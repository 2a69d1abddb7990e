// Command rapport-email is Rapport's reference email connector as a
// plugin (package plugins/email). Run it through a plugins.Manager; its
// configuration is its environment (plugins.Config.Env): SMTP_HOST,
// SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM, SMTP_TLS
// (starttls|opportunistic|tls|none), SMTP_CA_FILE, EMAIL_STATE_DIR (the
// journal of sent messages; set it), and for inbound email
// EMAIL_INBOUND_ADDR (e.g. 127.0.0.1:8025, where the provider's webhook
// posts) with EMAIL_INBOUND_TOKEN.
package main

import (
	"fmt"
	"os"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/email"
)

func main() {
	cfg, err := email.ConfigFromEnv(os.Getenv)
	if err != nil {
		fail(err)
	}
	c, err := email.New(cfg)
	if err != nil {
		fail(err)
	}
	defer c.Close()
	if addr := os.Getenv("EMAIL_INBOUND_ADDR"); addr != "" {
		stop, err := plugins.ListenHTTP(addr, c.InboundHandler())
		if err != nil {
			fail(err)
		}
		defer stop()
	}
	plugins.ServeConnector(c)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "rapport-email:", err)
	os.Exit(1)
}
