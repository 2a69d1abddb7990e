package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	assert.Regexp(t, `(?m)^\s+needs-clarification\s+Needs clarification\s+1\s+1\s+0\.0000$`, out, "the table")
	assert.Contains(t, out, "GROUP  STAGE")

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
		{[]string{"report", "rfm", "--pipeline", "b2b-deal"}, 2, "rfm does not take --pipeline"},
		{[]string{"report", "plan", "--owner", "u1", "--currency", "EUR"}, 2, "plan does not take --currency, --owner"},
		{[]string{"report", "commission", "--rates", "u1:300"}, 2, `--rates "u1:300"`},
		{[]string{"report", "commission", "--rate", "20000"}, 1, "commission rate Default is 20000"},
		{[]string{"report", "lost", "--pipeline", "nope"}, 1, `no pipeline "nope"`},
		{[]string{"report", "nps", "--by", "weather"}, 1, `cannot group survey responses by "weather"`},
		{[]string{"report", "cohorts", "--months", "500"}, 1, "500 months"},
		{[]string{"report", "campaigns", "--source", "web"}, 2, "campaigns does not take --source"},
		{[]string{"report", "lost", "--territory", "nowhere"}, 1, `no territory "nowhere"`},
		{[]string{"report", "clv", "--retention", "2"}, 1, "retention 2"},
		{[]string{"report", "rfm", "--currency", "ZZZ"}, 1, "ZZZ"},
	} {
		code, _, stderr := crmctl(t, append([]string{"-db", db}, c.args...)...)
		assert.Equal(t, c.code, code, "%v: %s", c.args, stderr)
		assert.Contains(t, stderr, c.msg, c.args)
	}
}

// salesDBMore adds to salesDB: deal 2 won (by u1), deal 3 lost for
// "price" (u1), a target for u1 around today, a campaign with a lead, an order by a
// customer and a survey response.
func salesDBMore(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	db := salesDB(t)
	e, err := crm.Open(ctx, crm.Options{Path: db})
	require.NoError(t, err)
	defer func() { require.NoError(t, e.Close()) }()
	page, err := e.Deals().List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	won := page.Items[1]
	won.Custom = map[string]any{"contract_ref": "K-1"}
	_, err = e.Deals().Update(ctx, won)
	require.NoError(t, err)
	for _, to := range []string{"proposal-prepared", "proposal-defended", "contract", "won"} {
		_, err = e.Deals().Move(ctx, won.ID, to, crm.MoveOptions{})
		require.NoError(t, err, to)
	}
	_, err = e.Deals().Move(ctx, page.Items[2].ID, "lost", crm.MoveOptions{Reason: "price"})
	require.NoError(t, err)
	ten := e.Default()
	now := time.Now().UTC()
	yesterday, tomorrow := now.AddDate(0, 0, -1).Format(time.DateOnly), now.AddDate(0, 0, 1).Format(time.DateOnly)
	_, err = ten.Users().Create(ctx, crm.User{Meta: crm.Meta{ID: "u1"}, Name: "Una"})
	require.NoError(t, err)
	_, err = ten.SalesTargets().Create(ctx, crm.SalesTarget{UserID: "u1", PeriodStart: yesterday, PeriodEnd: tomorrow, Amount: crm.Money{Amount: 4000, Currency: "EUR"}})
	require.NoError(t, err)
	camp, err := ten.Campaigns().Create(ctx, crm.Campaign{Name: "Spring", Cost: crm.Money{Amount: 500, Currency: "EUR"}})
	require.NoError(t, err)
	_, err = e.Leads().Create(ctx, crm.Lead{Company: "Acme", Source: "web", CampaignID: camp.ID})
	require.NoError(t, err)
	c, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Ada", ExternalID: "c-1"})
	require.NoError(t, err)
	_, err = e.Orders().Create(ctx, crm.Order{Number: "o1", ContactID: c.ID, OrderedAt: time.Now(), Currency: "EUR",
		Lines: []crm.OrderLine{{SKU: "tea", Description: "Tea", Quantity: 3, UnitPrice: crm.Money{Amount: 250}}}})
	require.NoError(t, err)
	nps := 10
	_, err = ten.SurveyResponses().Create(ctx, crm.SurveyResponse{Survey: "after-order", ContactID: c.ID, NPS: &nps,
		Items: []crm.SurveyItem{{Key: "speed", Score: 8}}})
	require.NoError(t, err)
	return db
}

func TestReportKinds(t *testing.T) {
	db := salesDBMore(t)
	for _, c := range []struct {
		args []string
		want []string // lines of the CSV
	}{
		{[]string{"overdue", "--pipeline", "b2b-deal"}, []string{"group,stage,label,norm,current,overdue,overdue_share", ",needs-clarification,Needs clarification,5bd,1,0,0.0000"}},
		{[]string{"lost"}, []string{"total,,1,1000", "reason,price,1,1000", "owner,u1,1,1000"}},
		{[]string{"forecast", "--owner", "u2"}, []string{",1,1000,100"}},
		{[]string{"plan"}, []string{",user,u1,", ",EUR,4000,1000,1,25.00"}},
		{[]string{"commission", "--rate", "100", "--rates", "u2=500"}, []string{"u1,1,1000,100,10", "total,1,1000,,10"}},
		{[]string{"leads"}, []string{"total,,,1,0,0,0.0000,0.0000,0,0", "source,web,,1,"}},
		{[]string{"leads", "--source", "fair"}, []string{"total,,,0,0,0,0.0000,0.0000,0,0"}},
		{[]string{"lost", "--industry", "mining"}, []string{"total,,0,0"}},
		{[]string{"campaigns"}, []string{",Spring,,,1,0,0.0000,0,0,0,500,0.0000,500,0,0,-1.0000"}},
		{[]string{"products"}, []string{"1,tea,Tea,,1,1,3,750,1.0000"}},
		{[]string{"rfm"}, []string{"c-1,1,1,750,1,1,1,"}},
		{[]string{"clv", "--horizon", "2"}, []string{"c-1,", ",1,750,1.0000,750,1500"}},
		{[]string{"cohorts", "--months", "2"}, []string{"cohort,customers,repeat,repeat_rate,m0,m1,m2", ",1,0,0.0000,1.0000,,"}},
		{[]string{"nps", "--by", "segment"}, []string{",1,1,1,0,0,100.00,1,80.00,0.00"}},
	} {
		args := append([]string{"-db", db, "report"}, c.args...)
		code, out, stderr := crmctl(t, append(args, "--format", "csv")...)
		require.Equal(t, 0, code, "%v: %s", c.args, stderr)
		for _, w := range c.want {
			assert.Contains(t, out, w, "%v:\n%s", c.args, out)
		}
		code, out, stderr = crmctl(t, append(args, "--format", "html")...)
		require.Equal(t, 0, code, "%v: %s", c.args, stderr)
		assert.True(t, strings.HasPrefix(out, "<!DOCTYPE html>"), c.args)
		assert.Contains(t, out, "<svg ", c.args)
		code, out, stderr = crmctl(t, append(args, "--format", "svg")...)
		require.Equal(t, 0, code, "%v: %s", c.args, stderr)
		assert.True(t, strings.HasPrefix(out, "<svg "), c.args)
		code, out, stderr = crmctl(t, args...)
		require.Equal(t, 0, code, "%v: %s", c.args, stderr)
		assert.NotEmpty(t, out)
	}
	// Slices that keep nothing.
	for _, c := range []struct {
		args   []string
		absent string
	}{
		{[]string{"products", "--product", "coffee"}, "tea"},
		{[]string{"products", "--product", "tea", "--owner", "nobody"}, "tea"},
		{[]string{"products", "--campaign", "nope"}, "tea"},
		{[]string{"rfm", "--owner", "nobody"}, "c-1"},
		{[]string{"clv", "--industry", "mining"}, "c-1"},
	} {
		code, out, stderr := crmctl(t, append([]string{"-db", db, "report", c.args[0], "--format", "csv"}, c.args[1:]...)...)
		require.Equal(t, 0, code, "%v: %s", c.args, stderr)
		assert.NotContains(t, out, c.absent, c.args)
	}
}
