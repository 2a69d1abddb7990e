package crm_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/loyalty"
	"github.com/rapportcrm/rapport/pipeline"
	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/storage/memory"
)

// kindConnector is a testConnector that says it serves another channel.
type kindConnector struct {
	*testConnector
	kind string
}

func (c kindConnector) Describe(context.Context) (plugins.Channel, error) {
	return plugins.Channel{Kind: c.kind, Capabilities: []string{plugins.CapSend}}, nil
}

// channels is an engine with an email and an SMS connector and a fake
// clock, for the ready-made automations.
type channels struct {
	e          *crm.Engine
	clock      *fakeClock
	mail, sms  *testConnector
	tenant     *crm.Tenant
	background context.Context
}

func openChannels(t *testing.T) channels {
	t.Helper()
	mail, sms := newTestConnector(t), newTestConnector(t)
	clock := newClock()
	st := memory.New()
	t.Cleanup(func() { _ = st.Close() })
	e, err := crm.Open(context.Background(), crm.Options{Store: st, Clock: clock,
		RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		Plugins: plugins.Static{Connectors: map[string]plugins.Connector{"email": mail, "sms": kindConnector{sms, "sms"}}},
		Seller:  plugins.Party{Name: "Rapport Demo GmbH"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return channels{e: e, clock: clock, mail: mail, sms: sms, tenant: e.Default(), background: context.Background()}
}

func (c channels) builtin(t *testing.T, name string) {
	t.Helper()
	set, err := automation.Builtin(name, c.clock.Now)
	require.NoError(t, err)
	require.NoError(t, c.e.Automations().Save(c.background, set))
}

// waitSent waits for n messages through conn.
func waitSent(t *testing.T, conn *testConnector, n int) []plugins.Message {
	t.Helper()
	eventually(t, func() bool { return len(conn.sent()) >= n }, "want %d messages", n)
	return conn.sent()
}

func TestBuiltinLeadCallback(t *testing.T) {
	c := openChannels(t)
	ctx := c.background
	c.builtin(t, "lead-callback")
	def, err := pipeline.Builtin("lead")
	require.NoError(t, err)
	require.NoError(t, c.e.Pipelines().Save(ctx, def))
	rep, err := c.tenant.Users().Create(ctx, crm.User{Name: "Rita Rep"})
	require.NoError(t, err)
	fresh, err := c.e.Leads().Create(ctx, crm.Lead{Meta: crm.Meta{Owner: rep.ID}, FirstName: "Ola", LastName: "Nordmann", Company: "Fjord AS", Pipeline: "lead", Stage: "registered"})
	require.NoError(t, err)
	called, err := c.e.Leads().Create(ctx, crm.Lead{Meta: crm.Meta{Owner: rep.ID}, FirstName: "Kari", Email: "kari@example.com", Pipeline: "lead", Stage: "registered"})
	require.NoError(t, err)
	_, err = c.e.Leads().Move(ctx, called.ID, "qualified", crm.MoveOptions{})
	require.NoError(t, err)

	c.clock.Advance(23 * time.Hour)
	_, err = c.e.CheckTimers(ctx)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	assert.Empty(t, linked(t, c.e, "lead", fresh.ID), "not yet 24h")

	c.clock.Advance(2 * time.Hour)
	_, err = c.e.CheckTimers(ctx)
	require.NoError(t, err)
	eventually(t, func() bool { return len(linked(t, c.e, "lead", fresh.ID)) == 1 }, "no callback task")
	a := linked(t, c.e, "lead", fresh.ID)[0]
	assert.Equal(t, crm.Call, a.Type)
	assert.Equal(t, rep.ID, a.Assignee)
	assert.Equal(t, "Call back Ola Nordmann (Fjord AS): waiting since 1 Mar 09:00", a.Subject)
	assert.Equal(t, c.clock.Now().Add(2*time.Hour), a.DueAt)
	assert.Empty(t, linked(t, c.e, "lead", called.ID), "a lead that moved on gets no callback")
}

func TestBuiltinDealEscalation(t *testing.T) {
	c := openChannels(t)
	ctx := c.background
	c.builtin(t, "deal-escalation")
	rep, _, lead := salesTeam(t, c.e)
	d := b2bDeal(t, c.e, rep)
	c.clock.Advance(10 * 24 * time.Hour) // 5 business days is the norm
	n, err := c.e.CheckTimers(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n.Breaches)
	eventually(t, func() bool { return len(linked(t, c.e, "deal", d.ID)) == 1 }, "no escalation")
	a := linked(t, c.e, "deal", d.ID)[0]
	assert.Equal(t, lead, a.Assignee, "the team lead gets it")
	assert.Equal(t, "Escalation: Robot arms is over its norm in needs-clarification (owner Rita Rep)", a.Subject)
	got, err := c.e.Deals().Get(ctx, d.ID)
	require.NoError(t, err)
	assert.Equal(t, []string{"escalated"}, got.Tags)
	// Checking again escalates nothing new.
	_, err = c.e.CheckTimers(ctx)
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	assert.Len(t, linked(t, c.e, "deal", d.ID), 1)
}

func TestBuiltinBirthdayGreeting(t *testing.T) {
	c := openChannels(t)
	ctx := c.background
	c.builtin(t, "birthday-greeting") // saved on 1 March 2026, 09:00
	ann, err := c.e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann", Phone: "+4915112345678",
		Meta: crm.Meta{Custom: map[string]any{"birthday": "1990-03-04"}}})
	require.NoError(t, err)
	_, err = c.e.Contacts().Create(ctx, crm.Contact{FirstName: "Bob", Email: "bob@example.com", // no phone
		Meta: crm.Meta{Custom: map[string]any{"birthday": "1985-03-04"}}})
	require.NoError(t, err)
	_, err = c.e.Contacts().Create(ctx, crm.Contact{FirstName: "Cy", Phone: "+4915100000000",
		Meta: crm.Meta{Custom: map[string]any{"birthday": "1970-12-24"}}})
	require.NoError(t, err)
	_, err = c.tenant.Ledger("loyalty", false).Apply(ctx, ann.ID, loyalty.Op{Key: "seed", Kind: loyalty.KindEarn, Points: 40, At: c.clock.Now()})
	require.NoError(t, err)

	c.clock.Advance(3*24*time.Hour + 59*time.Minute) // 4 March 09:59
	eventually(t, func() bool { n, err := c.e.CheckTimers(ctx); require.NoError(t, err); return n == crm.Timers{} }, "timers")
	time.Sleep(30 * time.Millisecond)
	assert.Empty(t, c.sms.sent(), "not before 10:00")
	c.clock.Advance(time.Minute)
	n, err := c.e.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n.Automations, "Ann's and Bob's birthdays are due; Bob has no phone, so his does not run")
	msgs := waitSent(t, c.sms, 1)
	require.Len(t, msgs, 1)
	assert.Equal(t, "+4915112345678", msgs[0].Recipient)
	assert.Equal(t, "Happy birthday, Ann! Here is 15% off anything for 7 days. Code: BDAY-"+strings.ToUpper(ann.ID[len(ann.ID)-6:]), msgs[0].Body)
	st, err := c.tenant.Ledger("loyalty", false).State(ctx, ann.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(140), st.Balance, "100 birthday points")

	// Nothing again that day, nor on later checks; next year again.
	_, err = c.e.CheckTimers(ctx)
	require.NoError(t, err)
	c.clock.Advance(364 * 24 * time.Hour)
	_, err = c.e.CheckTimers(ctx)
	require.NoError(t, err)
	msgs = waitSent(t, c.sms, 2)
	assert.Contains(t, msgs[1].Body, "Happy birthday, Cy!", "24 December passed meanwhile: it runs late, not never")
	time.Sleep(30 * time.Millisecond)
	assert.Len(t, c.sms.sent(), 2)
	c.clock.Advance(24 * time.Hour)
	_, err = c.e.CheckTimers(ctx)
	require.NoError(t, err)
	msgs = waitSent(t, c.sms, 3)
	assert.Len(t, msgs, 3)
	assert.Contains(t, msgs[2].Body, "Happy birthday, Ann!", "Ann's next birthday")
}

func TestBuiltinRenewalReminder(t *testing.T) {
	c := openChannels(t)
	ctx := c.background
	c.builtin(t, "renewal-reminder")
	rep, err := c.tenant.Users().Create(ctx, crm.User{Name: "Rita Rep"})
	require.NoError(t, err)
	acc, err := c.e.Accounts().Create(ctx, crm.Account{Name: "Fjord AS"})
	require.NoError(t, err)
	cust, err := c.e.Contacts().Create(ctx, crm.Contact{FirstName: "Ola", LastName: "Nordmann", Email: "ola@fjord.example", AccountID: acc.ID})
	require.NoError(t, err)
	ct, err := c.tenant.Contracts().Create(ctx, crm.Contract{Meta: crm.Meta{Owner: rep.ID}, Title: "Support 2026", AccountID: acc.ID, ContactID: cust.ID,
		StartsOn: "2025-05-01", EndsOn: "2026-04-30"})
	require.NoError(t, err)
	// Due 31 March, 09:00 (30 days before 30 April).
	c.clock.Advance(29 * 24 * time.Hour) // 30 March
	_, err = c.e.CheckTimers(ctx)
	require.NoError(t, err)
	time.Sleep(30 * time.Millisecond)
	assert.Empty(t, c.mail.sent())
	c.clock.Advance(24 * time.Hour)
	n, err := c.e.CheckTimers(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n.Automations)
	msgs := waitSent(t, c.mail, 1)
	assert.Equal(t, "ola@fjord.example", msgs[0].Recipient)
	assert.Equal(t, "Your contract Support 2026 ends on 2026-04-30", msgs[0].Subject)
	assert.Contains(t, msgs[0].Body, "Dear Ola Nordmann,")
	assert.Contains(t, msgs[0].Body, "with Rapport Demo GmbH ends on 2026-04-30")
	acts := linked(t, c.e, "contact", cust.ID)
	require.Len(t, acts, 1)
	assert.Equal(t, "Renewal: Support 2026 for Ola Nordmann ends on 2026-04-30", acts[0].Subject)
	assert.Equal(t, rep.ID, acts[0].Assignee)

	// A contract renewed (a new end) is reminded again before the new end.
	ct, err = c.tenant.Contracts().Get(ctx, ct.ID)
	require.NoError(t, err)
	ct.EndsOn = "2027-04-30"
	_, err = c.tenant.Contracts().Update(ctx, ct)
	require.NoError(t, err)
	eventually(t, func() bool {
		c.clock.Advance(0)
		_, err := c.e.CheckTimers(ctx)
		require.NoError(t, err)
		return true
	}, "")
	c.clock.Advance(365 * 24 * time.Hour)
	eventually(t, func() bool {
		_, err := c.e.CheckTimers(ctx)
		require.NoError(t, err)
		return len(c.mail.sent()) == 2
	}, "no reminder before the new end")
}

func TestBuiltinOrderThanks(t *testing.T) {
	c := openChannels(t)
	ctx := c.background
	c.builtin(t, "order-thanks")
	ann, err := c.e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann", Email: "ann@example.com"})
	require.NoError(t, err)
	o, err := c.tenant.Orders().Create(ctx, foodOrder(ann.ID, "A-17", c.clock.Now(), 1250))
	require.NoError(t, err)
	msgs := waitSent(t, c.mail, 1)
	assert.Equal(t, "ann@example.com", msgs[0].Recipient)
	assert.Equal(t, "Thank you for your order A-17", msgs[0].Subject)
	i := strings.Index(msgs[0].Body, "https://")
	require.GreaterOrEqual(t, i, 0, msgs[0].Body)
	u, err := url.Parse(strings.TrimSpace(msgs[0].Body[i:]))
	require.NoError(t, err)
	assert.Equal(t, "survey.example.com", u.Host)
	assert.Equal(t, o.ID, u.Query().Get("order"))
	assert.Equal(t, ann.ID, u.Query().Get("contact"))
	// A refund thanks nobody.
	ref := foodOrder(ann.ID, "A-17R", c.clock.Now(), -1250)
	ref.Refund, ref.RefundOf = true, o.ID
	ref.Lines[0].UnitPrice.Amount, ref.Lines[0].Quantity = 1250, -1
	_, _ = c.tenant.Orders().Create(ctx, ref)
	time.Sleep(50 * time.Millisecond)
	assert.Len(t, c.mail.sent(), 1)
}

func TestBuiltinWinBack(t *testing.T) {
	c := openChannels(t)
	ctx := c.background
	c.builtin(t, "win-back")
	segs, err := loyalty.LoadSegments("rfm.yaml", []byte(`segments:
  - {name: at_risk, rule: 'hasTag(member.tags, "churn-risk")'}
`), c.clock.Now)
	require.NoError(t, err)
	require.NoError(t, c.e.WatchSegments("rfm", segs, "EUR", nil))
	rep, err := c.tenant.Users().Create(ctx, crm.User{Name: "Rita Rep"})
	require.NoError(t, err)
	ann, err := c.e.Contacts().Create(ctx, crm.Contact{Meta: crm.Meta{Owner: rep.ID}, FirstName: "Ann", Email: "ann@example.com"})
	require.NoError(t, err)
	time.Sleep(30 * time.Millisecond)
	assert.Empty(t, c.mail.sent())
	ann.Tags = []string{"churn-risk"}
	_, err = c.e.Contacts().Update(ctx, ann)
	require.NoError(t, err)
	msgs := waitSent(t, c.mail, 1)
	assert.Equal(t, "We miss you, Ann", msgs[0].Subject)
	assert.Contains(t, msgs[0].Body, "20% off your next order")
	eventually(t, func() bool {
		got, err := c.e.Contacts().Get(ctx, ann.ID)
		require.NoError(t, err)
		return len(got.Tags) == 2
	}, "no win-back tag")
	got, err := c.e.Contacts().Get(ctx, ann.ID)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"churn-risk", "win-back"}, got.Tags)
	acts := linked(t, c.e, "contact", ann.ID)
	require.Len(t, acts, 1)
	assert.Equal(t, "Win-back call: Ann", acts[0].Subject)
	assert.Equal(t, c.clock.Now().Add(7*24*time.Hour), acts[0].DueAt)
}

// TestLoopThroughSendsIsStopped: a message that records an interaction
// that triggers another message is a loop through the sender; the depth
// goes along with the send, so it is stopped like any other.
func TestLoopThroughSendsIsStopped(t *testing.T) {
	c := openChannels(t)
	ctx := c.background
	saveAutomations(t, c.e, `
automations:
  - name: echo
    on: {event: interaction.created}
    do:
      - message: {via: email, subject: "Re: {{.Contact.FirstName}}", body: "We heard you."}
`)
	ann, err := c.e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann", Email: "ann@example.com"})
	require.NoError(t, err)
	_, err = c.tenant.Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "Hello", Links: crm.Links{ContactID: ann.ID}})
	require.NoError(t, err)
	eventually(t, func() bool {
		stopped := 0
		require.NoError(t, c.e.Automations().AllRuns(ctx, func(r crm.AutomationRun) error {
			if r.Status == crm.RunStopped {
				stopped++
				assert.Equal(t, 6, r.Event.Depth)
			}
			return nil
		}))
		return stopped == 1
	}, "the loop through sends was not stopped")
	assert.Len(t, c.mail.sent(), 5, "depths 1 to 5 sent; the sixth was stopped")
}
