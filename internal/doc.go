// Package internal holds helpers shared by Rapport's packages that are not
// public API. internal/expression is the one wrapper over
// github.com/expr-lang/expr used by pipeline guards and, later, loyalty
// rules, segments and automation conditions.
package internal
