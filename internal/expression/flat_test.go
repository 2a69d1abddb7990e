package expression_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/internal/expression"
)

type flatEnv struct {
	Member member `expr:"member"`
	Region string `expr:"region"`
}

// bindAll sets every variable p reads from e, the way a caller's binder
// does (by reflection here; the member type has no expr tags).
func bindAll(t *testing.T, p *expression.Program, e flatEnv) *expression.Vars {
	t.Helper()
	v := expression.NewVars()
	for _, name := range p.Vars() {
		switch {
		case name == "member":
			v.Set(name, e.Member)
		case name == "region":
			v.Set(name, e.Region)
		case strings.HasPrefix(name, "member."):
			f := reflect.ValueOf(e.Member).FieldByName(strings.TrimPrefix(name, "member."))
			if !f.IsValid() {
				t.Fatalf("no field for %s", name)
			}
			v.Set(name, f.Interface())
		default:
			t.Fatalf("no binding for %s", name)
		}
	}
	return v
}

func TestFlattenGivesTheSameResults(t *testing.T) {
	e := flatEnv{Member: sample(), Region: "north"}
	for _, src := range []string{
		`member.Tier == "gold" && hasTag(member.Tags, "vip")`,
		`daysSince(member.LastOrder) > 30 and region == "north"`,
		`sumBy(member.Orders, "Amount") > 2000`,
		`len(filter(member.Orders, .Category == "shoes")) == 2`,
		`member.Spent >= 0 && member.Tier in ["silver", "gold"]`,
		`let m = member; m.Tier == "gold"`,
	} {
		plain, err := expression.Compile("r", src, flatEnv{}, expression.AsBool(), expression.WithLimits(limits()))
		require.NoError(t, err, src)
		flat, err := expression.Compile("r", src, flatEnv{}, expression.AsBool(), expression.Flatten(), expression.WithLimits(limits()))
		require.NoError(t, err, src)
		want, err := plain.Bool(e)
		require.NoError(t, err, src)
		got, err := flat.Bool(bindAll(t, flat, e))
		require.NoError(t, err, src)
		assert.Equal(t, want, got, src)
		assert.True(t, got, src)
	}
}

func TestFlattenVars(t *testing.T) {
	p, err := expression.Compile("r", `member.Tier == "gold" || region == "x" || member.Tier == "vip"`, flatEnv{}, expression.Flatten())
	require.NoError(t, err)
	assert.Equal(t, []string{"member.Tier", "region"}, p.Vars())
}

func TestFlattenKeepsTypeChecking(t *testing.T) {
	for src, msg := range map[string]string{
		`member.Nope == 1`:           "Nope",
		`member.Tier > 5`:            "mismatched types",
		`nope`:                       "unknown name nope",
		`let member = 1; member > 0`: "cannot redeclare member",
	} {
		_, err := expression.Compile("r", src, flatEnv{}, expression.Flatten())
		var e *expression.Error
		require.ErrorAs(t, err, &e, src)
		assert.Contains(t, e.Error(), msg, src)
	}
	_, err := expression.Compile("r", `x`, map[string]any{"x": 1}, expression.Flatten())
	assert.ErrorContains(t, err, "needs a struct environment")
}

func TestFlattenRunChecks(t *testing.T) {
	p, err := expression.Compile("r", `len(member.Tags) > 0`, flatEnv{}, expression.AsBool(), expression.Flatten(),
		expression.WithLimits(expression.Limits{MaxCollectionLen: 3}))
	require.NoError(t, err)

	_, err = p.Bool(flatEnv{})
	assert.ErrorContains(t, err, "run it with *expression.Vars")

	v := expression.NewVars()
	v.Set("member.Tags", []string{"a", "b", "c", "d"})
	_, err = p.Bool(v)
	require.ErrorIs(t, err, expression.ErrEnv)

	// A whole struct is checked by its collections too.
	whole, err := expression.Compile("r", `len(member.Tags) > 0 && member.Tier == ""`, flatEnv{}, expression.AsBool(), expression.Flatten(),
		expression.WithLimits(expression.Limits{MaxCollectionLen: 3}))
	require.NoError(t, err)
	v.Reset()
	v.Set("member.Tags", []string{"a"})
	v.Set("member.Tier", "")
	ok, err := whole.Bool(v)
	require.NoError(t, err)
	assert.True(t, ok)
	v.Set("member", member{Orders: make([]order, 4)})
	_, err = whole.Bool(v)
	require.ErrorIs(t, err, expression.ErrEnv)

	// A variable never set is a run error, not a panic.
	_, err = p.Bool(expression.NewVars())
	require.Error(t, err)
}
