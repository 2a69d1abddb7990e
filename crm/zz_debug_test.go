package crm_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/automation"
	"github.com/rapportcrm/rapport/crm"
)

func TestZZLoopDebug(t *testing.T) {
	c := openChannels(t)
	ctx := c.background
	set, err := automation.Load("loop.yaml", []byte(`
automations:
  - name: answer
    on: {event: interaction.created}
    do:
      - message: {via: email, subject: "Thanks", body: "Thank you, {{.Contact.FirstName}}"}
`), nil)
	require.NoError(t, err)
	require.NoError(t, c.e.Automations().Save(ctx, set))
	ct, err := c.e.Contacts().Create(ctx, crm.Contact{FirstName: "Ann", Email: "ann@example.com"})
	require.NoError(t, err)
	in, err := c.tenant.Interactions().Create(ctx, crm.Interaction{Channel: "phone", Summary: "call", Links: crm.Links{ContactID: ct.ID}})
	require.NoError(t, err)
	time.Sleep(2 * time.Second)
	t.Logf("sent %d", len(c.mail.sent()))
	runs, _ := c.e.Automations().Runs(ctx, "interactions", in.ID)
	for _, r := range runs {
		t.Logf("%+v", r)
	}
	err = c.e.Automations().AllRuns(ctx, func(r crm.AutomationRun) error { t.Logf("run %s %s %s %v %s", r.RecordID, r.Status, r.Event.Type, r.Done, r.LastError); return nil })
	sends, _ := c.e.Sends().List(ctx, crm.ListOptions{})
	for _, s := range sends.Items {
		t.Logf("send %s %s %s", s.ID, s.Status, s.LastError)
	}
}
