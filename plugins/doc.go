// Package plugins is Rapport's plugin system: document renderers and
// channel connectors that run as separate processes speaking
// github.com/hashicorp/go-plugin over gRPC, so a plugin can crash, hang or
// be written by a third party without taking the engine down.
//
// Two Go interfaces are the whole contract: Renderer (templates + CRM data →
// PDF or HTML) and Connector (send messages through a channel, stream what
// arrives on it). They have three kinds of implementations:
//
//   - in-process values, which tests and users who want no subprocesses
//     plug in directly (Static hands them out by name);
//   - plugin processes: a plugin's main calls ServeRenderer or
//     ServeConnector with its implementation (see examples/plugin-author);
//   - the Manager's handles to those processes, which verify the binary's
//     SHA-256, talk over mutual TLS, bound every call by a timeout and
//     restart a crashed plugin with backoff. Their errors are *Error values
//     naming the plugin, testable with errors.Is against ErrTimeout,
//     ErrCrashed and ErrRejected.
//
// Plugin authors get help with the hard parts: Journal makes sends
// idempotent across restarts, Inbox holds inbound events until the host
// has stored them, ListenHTTP serves a connector's webhooks, and package
// plugintest builds and runs a plugin in tests.
//
// The wire protocol lives in plugins/proto (generated code in
// plugins/pluginpb); its version is Handshake.ProtocolVersion.
package plugins
