// Package internal holds helpers shared by Rapport's packages that are not
// public API. The expression wrapper over github.com/expr-lang/expr used by
// pipeline guards, loyalty rules, segments and automations will live in a
// sub-package here.
//
// Nothing is implemented here yet.
package internal
