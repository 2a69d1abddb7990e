// Package plugins will hold the out-of-process plugin protocol (go-plugin
// over gRPC) for document renderers and channel connectors, the host-side
// manager that verifies, starts, times out and restarts plugin processes,
// and the SDK plugin authors use.
//
// Nothing is implemented here yet; see the plugins issue.
package plugins
