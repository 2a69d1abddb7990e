// Package expression is Rapport's one wrapper over github.com/expr-lang/expr,
// used by pipeline guards, loyalty rules, segments and automation
// conditions, so that rule authors learn one language.
//
// # Model
//
// [Compile] turns a rule's source into a [Program] once, type-checked
// against a typed environment (a struct or a map of typed values): an
// unknown variable or a type error is a compile error. A Program is then
// run many times, concurrently, with [Program.Run] (or the typed
// [Program.Bool] and [Program.Int64] when compiled with [AsBool] or
// [AsInt64]).
//
// Rules are untrusted input: an ISV administrator writes them. Compile
// therefore refuses anything whose cost it cannot bound — sources over
// MaxSourceLen, trees over MaxNodes, predicates (all, any, filter, map, ...)
// nested deeper than MaxPredicateDepth or whose estimated iterations exceed
// MaxIterations, string expressions that could grow past MaxStringLen (for
// example repeated doubling with let), constant ranges longer than
// MaxCollectionLen, and the repeat builtin — and runs every program with an
// explicit VM memory budget. Collections in the environment must hold at
// most MaxCollectionLen elements; Run checks the top-level ones. Panics in
// compile and run become errors.
//
// Time comes from the injected clock: expr's own now and date builtins are
// disabled, and now(), daysSince, monthsSince, age and birthdayWithin read
// the [Limits.Clock] given at compile time. The rest of the CRM library:
// hasTag(tags, tag) (case-insensitive), between(x, lo, hi), sumBy(list,
// "field") (the sum of an integer field) and countBy(list, "field") (a
// map from each value of the field to its count); fields are found by
// their expr tag, json tag or Go name.
//
// A rule that runs millions of times over records (a segment over every
// member) can be compiled with [Flatten] and run with a [Vars]: the same
// type checking, but field reads become flat variable reads instead of
// reflection.
//
// Every error is an [*Error] that names the rule and, where known, the line
// and column.
package expression

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/vm"
)

// Limits bound what a rule may do. The zero value means the defaults.
type Limits struct {
	// MaxSourceLen is the maximum rule length in bytes. Defaults to 4096.
	MaxSourceLen int
	// MaxNodes is the maximum number of nodes of the syntax tree.
	// Defaults to 500.
	MaxNodes int
	// MaxPredicateDepth is how deeply predicate builtins (all, any, filter,
	// map, count, sum, ...) may nest. Defaults to 2.
	MaxPredicateDepth int
	// MaxCollectionLen is the largest collection a rule may see or build
	// with a constant range. Defaults to 1000.
	MaxCollectionLen int
	// MaxIterations bounds the sum, over all predicates, of
	// MaxCollectionLen to the power of their nesting depth. Defaults to
	// 2,000,000: one pair of nested predicates over full collections.
	MaxIterations int
	// MaxStringLen bounds the length in bytes that any string expression
	// may reach, estimated at compile time. Defaults to 1 MiB.
	MaxStringLen int
	// EnvStringLen is the length assumed for a string that comes from the
	// environment or a function when estimating string growth. Defaults to
	// 64 KiB.
	EnvStringLen int
	// MemoryBudget is expr's VM memory budget (in its units: elements
	// allocated by ranges, maps and filters). Defaults to 100,000.
	MemoryBudget uint
	// Clock gives the current time to now() and the date functions.
	// Defaults to time.Now.
	Clock func() time.Time
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxSourceLen, 4096)
	def(&l.MaxNodes, 500)
	def(&l.MaxPredicateDepth, 2)
	def(&l.MaxCollectionLen, 1000)
	def(&l.MaxIterations, 2_000_000)
	def(&l.MaxStringLen, 1<<20)
	def(&l.EnvStringLen, 64<<10)
	if l.MemoryBudget == 0 {
		l.MemoryBudget = 100_000
	}
	if l.Clock == nil {
		l.Clock = time.Now
	}
	return l
}

// Option configures Compile.
type Option func(*settings)

type settings struct {
	limits Limits
	result reflect.Kind // reflect.Invalid: any
	flat   bool
}

// WithLimits sets the limits; zero fields keep their defaults.
func WithLimits(l Limits) Option { return func(s *settings) { s.limits = l } }

// AsBool makes Compile require a boolean result.
func AsBool() Option { return func(s *settings) { s.result = reflect.Bool } }

// AsInt64 makes Compile require an integer result.
func AsInt64() Option { return func(s *settings) { s.result = reflect.Int64 } }

// Error is a compile or run error of a rule.
type Error struct {
	Rule    string // the rule's name
	Line    int    // 1-based line, 0 if unknown
	Column  int    // 1-based column, 0 if unknown
	Message string // what is wrong
	Snippet string // the source around the error, if known
	Err     error  // underlying error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule %s", e.Rule)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d, column %d)", e.Line, e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Sentinels matched by errors.Is on an *Error's chain.
var (
	// ErrTooComplex means the rule exceeds a limit.
	ErrTooComplex = errors.New("rule exceeds a limit")
	// ErrEnv means the environment given to Run breaks a limit.
	ErrEnv = errors.New("environment exceeds a limit")
)

// Program is a compiled rule. It is safe for concurrent use.
type Program struct {
	name   string
	prog   *vm.Program
	limits Limits
	result reflect.Kind
	vms    sync.Pool // *vm.VM
	// collections holds the indexes of top-level struct fields (or map
	// keys) of the environment that are slices or maps, checked by Run.
	fieldIdx [][]int
	// checkEnvs says whether Run has anything to check: a map
	// environment, or a struct with collections at the top.
	checkEnvs bool
	// vars is set when compiled with Flatten: the flat names the
	// program reads from its Vars.
	vars []string
	flat bool
}

// Name returns the rule's name.
func (p *Program) Name() string { return p.name }

// Compile compiles src, named name in errors, against env: a struct (or
// pointer to one) or a map whose values have the types Run will pass.
func Compile(name, src string, env any, opts ...Option) (p *Program, err error) {
	s := settings{}
	for _, o := range opts {
		o(&s)
	}
	lim := s.limits.withDefaults()
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, &Error{Rule: name, Message: fmt.Sprintf("internal error while compiling: %v", r)}
		}
	}()
	if len(src) > lim.MaxSourceLen {
		return nil, &Error{Rule: name, Message: fmt.Sprintf("rule is %d bytes long, the limit is %d", len(src), lim.MaxSourceLen), Err: ErrTooComplex}
	}
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Rule: name, Message: "rule is empty"}
	}
	cfg := conf.CreateNew()
	checkEnv := env
	var flat *flattener
	if s.flat {
		types, err := flatTypes(env)
		if err != nil {
			return nil, &Error{Rule: name, Message: err.Error()}
		}
		checkEnv, flat = types, &flattener{types: types}
	}
	exprOpts := []expr.Option{
		expr.Env(checkEnv),
		expr.MaxNodes(uint(lim.MaxNodes)),
		expr.DisableBuiltin("repeat"),
		expr.DisableBuiltin("now"),
		expr.DisableBuiltin("date"),
	}
	exprOpts = append(exprOpts, functions(lim)...)
	if flat != nil {
		exprOpts = append(exprOpts, expr.Patch(flat))
	}
	switch s.result {
	case reflect.Bool:
		exprOpts = append(exprOpts, expr.AsBool())
	case reflect.Int64:
		exprOpts = append(exprOpts, expr.AsInt64())
	}
	for _, o := range exprOpts {
		o(cfg)
	}
	for name := range cfg.Disabled {
		delete(cfg.Builtins, name)
	}
	cfg.Check()
	tree, err := checker.ParseCheck(src, cfg)
	if err != nil {
		return nil, wrap(name, src, err)
	}
	if err := analyze(name, src, tree.Node, lim); err != nil {
		return nil, err
	}
	if err := optimizer.Optimize(&tree.Node, cfg); err != nil {
		return nil, wrap(name, src, err)
	}
	prog, err := compiler.Compile(tree, cfg)
	if err != nil {
		return nil, wrap(name, src, err)
	}
	p = &Program{name: name, prog: prog, limits: lim, result: s.result, fieldIdx: collectionFields(env)}
	t := reflect.TypeOf(env)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	p.checkEnvs = len(p.fieldIdx) > 0 || t == nil || t.Kind() != reflect.Struct
	if flat != nil {
		p.flat, p.checkEnvs, p.fieldIdx = true, false, nil
		p.vars = usedVars(&tree.Node, flat.types)
	}
	return p, nil
}

// wrap converts an expr error into an *Error.
func wrap(name, source string, err error) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		if fe.Line == 0 && source != "" {
			fe = fe.Bind(file.NewSource(source))
		}
		return &Error{Rule: name, Line: fe.Line, Column: fe.Column + 1, Message: fe.Message, Snippet: fe.Snippet, Err: err}
	}
	return &Error{Rule: name, Message: err.Error(), Err: err}
}

// Run evaluates the program against env, which must have the type the
// program was compiled against.
func (p *Program) Run(env any) (any, error) {
	// A VM keeps its stack between runs: reusing one saves the
	// allocations that dominate a short rule.
	machine, _ := p.vms.Get().(*vm.VM)
	if machine == nil {
		machine = &vm.VM{}
	}
	out, err := p.run(machine, env)
	p.vms.Put(machine)
	return out, err
}

// Machine runs programs for one goroutine: a caller that runs many rules
// in a loop keeps one and passes it to BoolOn, saving the shared pool's
// cost on every run. It is not safe for concurrent use.
type Machine struct{ vm vm.VM }

func (p *Program) run(machine *vm.VM, env any) (out any, err error) {
	if p.flat {
		vars, ok := env.(*Vars)
		if !ok {
			return nil, &Error{Rule: p.name, Message: fmt.Sprintf("rule was compiled with Flatten: run it with *expression.Vars, not %T", env)}
		}
		if vars.longest > p.limits.MaxCollectionLen {
			return nil, &Error{Rule: p.name, Err: ErrEnv, Message: fmt.Sprintf("a variable has %d elements, the limit is %d", vars.longest, p.limits.MaxCollectionLen)}
		}
		env = vars.m
	} else if p.checkEnvs {
		if err := p.checkEnv(env); err != nil {
			return nil, err
		}
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &Error{Rule: p.name, Message: fmt.Sprintf("run failed: %v", r)}
		}
	}()
	machine.MemoryBudget = p.limits.MemoryBudget
	out, err = machine.Run(p.prog, env)
	if err != nil {
		return nil, wrap(p.name, p.prog.Source().String(), err)
	}
	return out, nil
}

// Bool runs a program compiled with AsBool.
func (p *Program) Bool(env any) (bool, error) {
	return p.BoolOn(nil, env)
}

// BoolOn is Bool on m (nil: a pooled machine).
func (p *Program) BoolOn(m *Machine, env any) (bool, error) {
	if p.result != reflect.Bool {
		return false, &Error{Rule: p.name, Message: "rule was not compiled with AsBool"}
	}
	var out any
	var err error
	if m == nil {
		out, err = p.Run(env)
	} else {
		out, err = p.run(&m.vm, env)
	}
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, &Error{Rule: p.name, Message: fmt.Sprintf("rule returned %T, not bool", out)}
	}
	return b, nil
}

// Int64 runs a program compiled with AsInt64.
func (p *Program) Int64(env any) (int64, error) {
	if p.result != reflect.Int64 {
		return 0, &Error{Rule: p.name, Message: "rule was not compiled with AsInt64"}
	}
	out, err := p.Run(env)
	if err != nil {
		return 0, err
	}
	switch v := out.(type) {
	case int64:
		return v, nil
	case int:
		return int64(v), nil
	}
	return 0, &Error{Rule: p.name, Message: fmt.Sprintf("rule returned %T, not an integer", out)}
}

// collectionFields returns the field indexes of the top-level slice, array
// and map fields of a struct environment.
func collectionFields(env any) [][]int {
	t := reflect.TypeOf(env)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out [][]int
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() {
			continue
		}
		switch f.Type.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map:
			out = append(out, f.Index)
		}
	}
	return out
}

// checkEnv enforces MaxCollectionLen on the environment's top-level
// collections: struct fields found at compile time, or map values.
func (p *Program) checkEnv(env any) error {
	v := reflect.ValueOf(env)
	for v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	check := func(name string, c reflect.Value) error {
		switch c.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map:
			if c.Len() > p.limits.MaxCollectionLen {
				return &Error{Rule: p.name, Err: ErrEnv, Message: fmt.Sprintf("environment value %s has %d elements, the limit is %d", name, c.Len(), p.limits.MaxCollectionLen)}
			}
		}
		return nil
	}
	switch v.Kind() {
	case reflect.Struct:
		for _, idx := range p.fieldIdx {
			var f reflect.Value
			if len(idx) == 1 {
				f = v.Field(idx[0])
			} else {
				var err error
				if f, err = v.FieldByIndexErr(idx); err != nil {
					continue // through a nil embedded pointer
				}
			}
			if k := f.Kind(); (k == reflect.Slice || k == reflect.Map) && f.Len() <= p.limits.MaxCollectionLen {
				continue
			}
			if err := check(v.Type().FieldByIndex(idx).Name, f); err != nil {
				return err
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			val := it.Value()
			if val.Kind() == reflect.Interface {
				val = val.Elem()
			}
			if err := check(fmt.Sprint(it.Key().Interface()), val); err != nil {
				return err
			}
		}
	}
	return nil
}
