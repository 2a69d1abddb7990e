package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/pipeline"
)

// salesDB writes a database with the b2b-deal pipeline, three deals of
// owner u1 and one of u2, and one of u1's moved on.
func salesDB(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "sales.db")
	e, err := crm.Open(ctx, crm.Options{Path: db})
	require.NoError(t, err)
	def, err := pipeline.Builtin("b2b-deal")
	require.NoError(t, err)
	require.NoError(t, e.Pipelines().Save(ctx, def))
	var first crm.Deal
	for i, owner := range []string{"u1", "u1", "u1", "u2"} {
		d, err := e.Deals().Create(ctx, crm.Deal{Meta: crm.Meta{Owner: owner}, Title: "d", Pipeline: "b2b-deal",
			Amount: crm.Money{Amount: 1000, Currency: "EUR"}})
		require.NoError(t, err)
		if i == 0 {
			first = d
		}
	}
	_, err = e.Deals().Move(ctx, first.ID, "proposal-prepared", crm.MoveOptions{})
	require.NoError(t, err)
	require.NoError(t, e.Close())
	return db
}

func TestReportFunnelAndStages(t *testing.T) {
	db := salesDB(t)
	code, out, stderr := crmctl(t, "-db", db, "report", "funnel", "--pipeline", "b2b-deal", "--by", "owner", "--format", "csv")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, out, "u1,needs-clarification,Needs clarification,,3,3,0.3333\n")
	assert.Contains(t, out, "u1,proposal-prepared,Proposal prepared,,1,1,0.0000\n")
	assert.Contains(t, out, "u2,needs-clarification,Needs clarification,,1,1,0.0000\n")

	code, out, stderr = crmctl(t, "-db", db, "report", "funnel", "--pipeline", "b2b-deal", "--owner", "u2")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `(?m)^\s+Needs clarification\s+1\s+1\s+0\.0%$`, out, "the table")

	code, out, stderr = crmctl(t, "-db", db, "report", "stages", "--pipeline", "b2b-deal", "--format", "json")
	require.Equal(t, 0, code, stderr)
	var st struct {
		Groups []struct {
			Stages []struct {
				Stage          string
				Exits, Current int
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st))
	require.Len(t, st.Groups, 1)
	assert.Equal(t, 1, st.Groups[0].Stages[0].Exits, "one deal left the first stage")
	assert.Equal(t, 3, st.Groups[0].Stages[0].Current)

	// A period with nothing in it.
	code, out, stderr = crmctl(t, "-db", db, "report", "funnel", "--pipeline", "b2b-deal", "--from", "2000-01-01", "--to", "2000-01-31", "--format", "csv")
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, 7, strings.Count(out, "\n"))
	assert.Contains(t, out, ",needs-clarification,Needs clarification,,0,0,0.0000\n")
}

func TestReportErrors(t *testing.T) {
	db := salesDB(t)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"report"}, 2, "usage: crmctl report"},
		{[]string{"report", "pie"}, 2, `unknown report "pie"`},
		{[]string{"report", "funnel", "--pipeline", "b2b-deal", "--format", "xml"}, 2, `unknown format "xml"`},
		{[]string{"report", "funnel", "--pipeline", "b2b-deal", "--from", "March"}, 2, `--from "March" is not a YYYY-MM-DD date`},
		{[]string{"report", "funnel"}, 1, "no pipeline given"},
		{[]string{"report", "funnel", "--pipeline", "nope"}, 1, `no pipeline "nope"`},
		{[]string{"report", "funnel", "--pipeline", "b2b-deal", "--by", "industry"}, 1, `cannot group by "industry"`},
		{[]string{"report", "funnel", "--pipeline", "b2b-deal", "--from", "2024-02-01", "--to", "2024-01-01"}, 1, "is empty"},
		{[]string{"report", "rfm", "--pipeline", "b2b-deal"}, 2, "rfm takes --reference"},
		{[]string{"report", "rfm", "--currency", "ZZZ"}, 1, "ZZZ"},
	} {
		code, _, stderr := crmctl(t, append([]string{"-db", db}, c.args...)...)
		assert.Equal(t, c.code, code, "%v: %s", c.args, stderr)
		assert.Contains(t, stderr, c.msg, c.args)
	}
}
