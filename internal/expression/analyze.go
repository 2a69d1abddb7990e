package expression

import (
	"fmt"
	"reflect"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
)

// predicateBuiltins are the builtins that run a predicate per element.
var predicateBuiltins = map[string]bool{
	"all": true, "none": true, "any": true, "one": true, "filter": true, "map": true,
	"find": true, "findIndex": true, "findLast": true, "findLastIndex": true,
	"count": true, "sum": true, "groupBy": true, "sortBy": true, "reduce": true,
}

// analyzer walks a type-checked tree and refuses what it cannot bound.
type analyzer struct {
	rule  string
	src   string
	lim   Limits
	vars  map[string]int // let variable → bound on its string length
	iters int            // estimated predicate iterations
}

func analyze(rule, src string, root ast.Node, lim Limits) error {
	a := &analyzer{rule: rule, src: src, lim: lim, vars: map[string]int{}}
	_, err := a.walk(root, 0)
	return err
}

func (a *analyzer) fail(n ast.Node, format string, args ...any) error {
	fe := (&file.Error{Location: n.Location(), Message: fmt.Sprintf(format, args...)}).Bind(file.NewSource(a.src))
	return &Error{Rule: a.rule, Line: fe.Line, Column: fe.Column + 1, Message: fe.Message, Snippet: fe.Snippet, Err: ErrTooComplex}
}

// walk checks n and returns a bound on the length of the string it can
// produce (0 for values that are not strings). depth is the number of
// enclosing predicates.
func (a *analyzer) walk(n ast.Node, depth int) (int, error) {
	if n == nil {
		return 0, nil
	}
	switch n := n.(type) {
	case *ast.StringNode:
		return len(n.Value), nil
	case *ast.ConstantNode:
		if s, ok := n.Value.(string); ok {
			return len(s), nil
		}
		return 0, nil
	case *ast.IdentifierNode:
		if b, ok := a.vars[n.Value]; ok {
			return b, nil
		}
		return a.envBound(n.Type()), nil
	case *ast.PointerNode:
		return a.envBound(n.Type()), nil
	case *ast.MemberNode:
		if _, err := a.walk(n.Node, depth); err != nil {
			return 0, err
		}
		if _, err := a.walk(n.Property, depth); err != nil {
			return 0, err
		}
		return a.envBound(n.Type()), nil
	case *ast.UnaryNode:
		_, err := a.walk(n.Node, depth)
		return 0, err
	case *ast.BinaryNode:
		l, err := a.walk(n.Left, depth)
		if err != nil {
			return 0, err
		}
		r, err := a.walk(n.Right, depth)
		if err != nil {
			return 0, err
		}
		switch n.Operator {
		case "+":
			return a.str(n, l+r)
		case "??":
			return max(l, r), nil
		case "..":
			lo, lok := n.Left.(*ast.IntegerNode)
			hi, hok := n.Right.(*ast.IntegerNode)
			if lok && hok && hi.Value-lo.Value+1 > a.lim.MaxCollectionLen {
				return 0, a.fail(n, "range %d..%d has %d elements, the limit is %d", lo.Value, hi.Value, hi.Value-lo.Value+1, a.lim.MaxCollectionLen)
			}
		}
		return 0, nil
	case *ast.ChainNode:
		return a.walk(n.Node, depth)
	case *ast.SliceNode:
		b, err := a.walk(n.Node, depth)
		if err != nil {
			return 0, err
		}
		if _, err := a.walk(n.From, depth); err != nil {
			return 0, err
		}
		_, err = a.walk(n.To, depth)
		return b, err
	case *ast.ConditionalNode:
		if _, err := a.walk(n.Cond, depth); err != nil {
			return 0, err
		}
		x, err := a.walk(n.Exp1, depth)
		if err != nil {
			return 0, err
		}
		y, err := a.walk(n.Exp2, depth)
		return max(x, y), err
	case *ast.VariableDeclaratorNode:
		v, err := a.walk(n.Value, depth)
		if err != nil {
			return 0, err
		}
		old, had := a.vars[n.Name]
		a.vars[n.Name] = v
		b, err := a.walk(n.Expr, depth)
		if had {
			a.vars[n.Name] = old
		} else {
			delete(a.vars, n.Name)
		}
		return b, err
	case *ast.SequenceNode:
		var b int
		for _, c := range n.Nodes {
			var err error
			if b, err = a.walk(c, depth); err != nil {
				return 0, err
			}
		}
		return b, nil
	case *ast.ArrayNode:
		return a.walkAll(n.Nodes, depth)
	case *ast.MapNode:
		return a.walkAll(n.Pairs, depth)
	case *ast.PairNode:
		if _, err := a.walk(n.Key, depth); err != nil {
			return 0, err
		}
		_, err := a.walk(n.Value, depth)
		return 0, err
	case *ast.PredicateNode:
		return a.walk(n.Node, depth)
	case *ast.CallNode:
		sum, err := a.walkAll(n.Arguments, depth)
		if err != nil {
			return 0, err
		}
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && id.Value == concatFunc {
			return a.str(n, sum)
		}
		return a.envBound(n.Type()), nil
	case *ast.BuiltinNode:
		return a.builtin(n, depth)
	}
	return 0, nil
}

func (a *analyzer) walkAll(nodes []ast.Node, depth int) (int, error) {
	sum := 0
	for _, c := range nodes {
		b, err := a.walk(c, depth)
		if err != nil {
			return 0, err
		}
		sum += b
	}
	return sum, nil
}

func (a *analyzer) builtin(n *ast.BuiltinNode, depth int) (int, error) {
	if !predicateBuiltins[n.Name] {
		b, err := a.walkAll(n.Arguments, depth)
		if err != nil {
			return 0, err
		}
		switch n.Name {
		case "trim", "trimPrefix", "trimSuffix", "upper", "lower":
			return b, nil
		}
		return a.envBound(n.Type()), nil
	}
	inner := depth + 1
	if inner > a.lim.MaxPredicateDepth {
		return 0, a.fail(n, "%s is nested %d predicates deep, the limit is %d", n.Name, inner, a.lim.MaxPredicateDepth)
	}
	per := 1
	for range inner {
		per *= a.lim.MaxCollectionLen
	}
	a.iters += per
	if a.iters > a.lim.MaxIterations {
		return 0, a.fail(n, "the rule's predicates may run %d iterations, the limit is %d", a.iters, a.lim.MaxIterations)
	}
	for i, arg := range n.Arguments {
		d := depth
		if _, ok := arg.(*ast.PredicateNode); ok || i > 0 {
			d = inner
		}
		if _, err := a.walk(arg, d); err != nil {
			return 0, err
		}
	}
	return a.envBound(n.Type()), nil
}

// str checks a string bound.
func (a *analyzer) str(n ast.Node, b int) (int, error) {
	if b > a.lim.MaxStringLen {
		return 0, a.fail(n, "this string may grow to %d bytes, the limit is %d", b, a.lim.MaxStringLen)
	}
	return b, nil
}

// envBound is the assumed string length of a value of type t that comes
// from outside the rule's own literals.
func (a *analyzer) envBound(t reflect.Type) int {
	if t == nil {
		return a.lim.EnvStringLen
	}
	switch t.Kind() {
	case reflect.String, reflect.Interface:
		return a.lim.EnvStringLen
	}
	return 0
}
