package crm_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/crm"
	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/storage/memory"
)

// deliver posts an event to the connector's inbox and waits until the
// engine stored it.
func deliver(t *testing.T, conn *testConnector, ev plugins.InboundEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, conn.inbox.Deliver(ctx, ev))
}

func TestInboundEvents(t *testing.T) {
	conn := newTestConnector(t)
	e := openWithPlugins(t, memory.New(), conn, func(o *crm.Options) { o.Inbound = []string{"mail"} })
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	zoe, err := e.Contacts().Create(ctx, crm.Contact{FirstName: "Zoë", Email: "zoe@example.com", Phone: "+491701234567"})
	require.NoError(t, err)
	_, err = e.Default().Campaigns().Create(ctx, crm.Campaign{Meta: crm.Meta{ID: "winter"}, Name: "Winter sale"})
	require.NoError(t, err)

	// A form submission becomes a lead with its source and campaign, and
	// an interaction; posted twice, it is stored once.
	form := plugins.InboundEvent{ID: "f1", At: at, Form: &plugins.FormSubmission{Form: "contact-us", Source: "newsletter", Campaign: "winter",
		Fields: map[string]string{"name": "Ada King Lovelace", "email": "ada@example.com", "company": "Analytical Ltd", "message": "Call me"}}}
	deliver(t, conn, form)
	deliver(t, conn, form)
	leads, err := e.Leads().List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	require.Len(t, leads.Items, 1)
	l := leads.Items[0]
	assert.Equal(t, "Ada", l.FirstName)
	assert.Equal(t, "King Lovelace", l.LastName)
	assert.Equal(t, "newsletter", l.Source)
	assert.Equal(t, "winter", l.CampaignID)
	assert.Equal(t, "Analytical Ltd", l.Company)
	assert.Equal(t, []string{"form:contact-us"}, l.Tags)

	// A campaign the tenant does not have is kept as a tag.
	deliver(t, conn, plugins.InboundEvent{ID: "f0", At: at, Form: &plugins.FormSubmission{Form: "contact-us", Campaign: "spring",
		Fields: map[string]string{"name": "Bo", "email": "bo@example.com"}}})
	bo, err := e.Leads().List(ctx, crm.ListOptions{By: "tag", Value: "campaign:spring"})
	require.NoError(t, err)
	require.Len(t, bo.Items, 1)
	assert.Equal(t, "web-form", bo.Items[0].Source)
	assert.Empty(t, bo.Items[0].CampaignID)
	tl, err := e.Leads().Timeline(ctx, l.ID, crm.TimelineOptions{})
	require.NoError(t, err)
	require.Len(t, tl.Items, 1)
	assert.Contains(t, tl.Items[0].Summary, "form contact-us submitted")

	// An email from a known contact lands on the contact's timeline.
	deliver(t, conn, plugins.InboundEvent{ID: "m1", At: at, Message: &plugins.InboundMessage{
		From: "Zoë <zoe@example.com>", To: "sales@rapport.example", Subject: "Re: proposal", Body: "Looks good"}})
	// A call from the same contact's phone, ended after 3 minutes.
	deliver(t, conn, plugins.InboundEvent{ID: "c1s", At: at, Call: &plugins.CallEvent{CallID: "c1", State: "started", From: "+491701234567", Direction: "inbound"}})
	deliver(t, conn, plugins.InboundEvent{ID: "c1e", At: at.Add(3 * time.Minute), Call: &plugins.CallEvent{CallID: "c1", State: "ended",
		From: "+491701234567", Direction: "inbound", Duration: 3 * time.Minute, RecordingRef: "https://pbx/rec/c1.mp3"}})
	tl, err = e.Contacts().Timeline(ctx, zoe.ID, crm.TimelineOptions{})
	require.NoError(t, err)
	var summaries []string
	for _, te := range tl.Items {
		summaries = append(summaries, te.Summary)
	}
	assert.Equal(t, []string{"email inbound: Re: proposal", "phone inbound: call with +491701234567, 3m0s"}, summaries)

	// An email from someone unknown makes a lead.
	deliver(t, conn, plugins.InboundEvent{ID: "m2", At: at, Message: &plugins.InboundMessage{From: "new@example.org", Body: "Do you ship to Norway?"}})
	leads, err = e.Leads().List(ctx, crm.ListOptions{By: "source", Value: "email"})
	require.NoError(t, err)
	require.Len(t, leads.Items, 1)
	assert.Equal(t, "new@example.org", leads.Items[0].Email)

	// A form the domain refuses (a malformed email) is kept as a dead
	// letter, not retried forever, and creates nothing.
	deliver(t, conn, plugins.InboundEvent{ID: "f2", At: at, Form: &plugins.FormSubmission{Form: "contact-us", Fields: map[string]string{"name": "X", "email": "not an email"}}})
	dls, err := e.Default().DeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, "inbound:mail", dls[0].Subscription)
	assert.Equal(t, "inbound.form", dls[0].EventType)
	assert.Contains(t, dls[0].Error, "email")
	leads, err = e.Leads().List(ctx, crm.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, leads.Items, 3)
}

func TestDeliveryUpdates(t *testing.T) {
	conn := newTestConnector(t)
	e := openWithPlugins(t, memory.New(), conn, func(o *crm.Options) { o.Inbound = []string{"mail"} })
	d := sampleDeal(t, e)
	s, err := e.SendDocument(context.Background(), d.ID, "invoice", "mail")
	require.NoError(t, err)
	s = waitSend(t, e, s.ID)
	require.Equal(t, crm.SendSent, s.Status)

	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: s.ProviderID, Status: plugins.StatusDelivered}})
	s, err = e.Sends().Get(context.Background(), s.ID)
	require.NoError(t, err)
	assert.Equal(t, crm.SendDelivered, s.Status)
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: s.ProviderID, Status: plugins.StatusRead}})
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: s.ProviderID, Status: plugins.StatusDelivered}})
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: s.ProviderID, Status: plugins.StatusFailed, Reason: "late"}})
	s, err = e.Sends().Get(context.Background(), s.ID)
	require.NoError(t, err)
	assert.Equal(t, crm.SendRead, s.Status, "a late 'delivered' or 'failed' does not undo 'read'")
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: "unknown", Status: plugins.StatusFailed}})

	s2, err := e.SendDocument(context.Background(), d.ID, "proposal", "mail")
	require.NoError(t, err)
	s2 = waitSend(t, e, s2.ID)
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: s2.ProviderID, Status: plugins.StatusFailed, Reason: "mailbox full"}})
	s2, err = e.Sends().Get(context.Background(), s2.ID)
	require.NoError(t, err)
	assert.Equal(t, crm.SendFailed, s2.Status)
	assert.Contains(t, s2.LastError, "mailbox full")
	assert.Contains(t, timelineTypes(t, e, d.ID), crm.TimelineSendFailed)
}

// A provider's callback can arrive before the engine has recorded the
// send it is about: it is kept and applied when the send is recorded.
func TestDeliveryUpdateBeforeSendIsRecorded(t *testing.T) {
	conn := newTestConnector(t)
	conn.block = make(chan struct{})
	e := openWithPlugins(t, memory.New(), conn, func(o *crm.Options) { o.Inbound = []string{"mail"} })
	d := sampleDeal(t, e)
	s, err := e.SendDocument(context.Background(), d.ID, "invoice", "mail")
	require.NoError(t, err)
	require.Eventually(t, func() bool { conn.mu.Lock(); defer conn.mu.Unlock(); return conn.calls == 1 }, 5*time.Second, time.Millisecond)
	// msg-1 is the id the connector is about to return.
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: "msg-1", Status: plugins.StatusDelivered}})
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: "msg-1", Status: plugins.StatusSent}})
	close(conn.block)
	s = waitSend(t, e, s.ID)
	require.Eventually(t, func() bool {
		s, err = e.Sends().Get(context.Background(), s.ID)
		require.NoError(t, err)
		return s.Status == crm.SendDelivered
	}, 5*time.Second, 5*time.Millisecond, "the early 'delivered' applies, the later 'sent' does not undo it")

	// Failed twice: one timeline entry. Failed after read: ignored.
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: "msg-1", Status: plugins.StatusFailed, Reason: "bounced"}})
	deliver(t, conn, plugins.InboundEvent{Delivery: &plugins.DeliveryUpdate{ProviderID: "msg-1", Status: plugins.StatusFailed, Reason: "bounced"}})
	n := 0
	for _, typ := range timelineTypes(t, e, d.ID) {
		if typ == crm.TimelineSendFailed {
			n++
		}
	}
	assert.Equal(t, 1, n)
}
