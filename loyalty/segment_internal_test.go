package loyalty

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMemberVars checks that every field rules can read of a member has
// a getter returning that field, so a new Member field cannot be
// forgotten by the segment binder.
func TestMemberVars(t *testing.T) {
	day := func(n int) time.Time { return time.Date(2026, 1, n, 0, 0, 0, 0, time.UTC) }
	m := Member{ID: "m1", Tier: "gold", Tags: []string{"a"}, City: "Oslo", Industry: "retail",
		Birthday: day(1), JoinedAt: day(2), Balance: 3, TotalSpent: 4, OrderCount: 5, LastOrderAt: day(3),
		R: 6, F: 7, M: 8, Custom: map[string]any{"k": "v"}}
	v := reflect.ValueOf(m)
	typ := v.Type()
	for i := range typ.NumField() {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("expr"), ",")
		if tag == "-" {
			continue
		}
		get, ok := memberVars["member."+tag]
		require.True(t, ok, "no getter for member.%s", tag)
		assert.Equal(t, v.Field(i).Interface(), get(&m), tag)
		assert.False(t, v.Field(i).IsZero(), "set %s in this test", typ.Field(i).Name)
	}
	assert.Equal(t, m, memberVars["member"](&m))
	assert.Len(t, memberVars, typ.NumField()+1)
}
