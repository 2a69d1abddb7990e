package plugins

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// ListenHTTP serves h on addr in the background for a connector's
// webhooks (inbound email, form submissions, provider callbacks) and
// returns a function that stops it. A plugin's main calls it before
// ServeConnector, so that a port already taken fails the plugin's start
// with a clear error.
func ListenHTTP(addr string, h http.Handler) (stop func(), err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }, nil
}
