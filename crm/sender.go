package crm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/mail"
	"slices"
	"strings"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/storage"
)

// senderSubscription is the engine's own subscription that delivers
// sends; names starting with "rapport-" are the engine's.
const senderSubscription = "rapport-sends"

// startPlugins starts the sender and the inbound receivers.
func (e *Engine) startPlugins() error {
	if e.opts.Plugins == nil {
		return nil
	}
	if err := e.Subscribe(Subscription{Name: senderSubscription, Events: []string{"send.created"}, Handler: e.handleSend}); err != nil {
		return err
	}
	for _, name := range e.opts.Inbound {
		e.workers.Go(func() { e.receive(name) })
	}
	return nil
}

// handleSend delivers one send: it renders its document, hands the
// message to the connector with the send's idempotency key, and records
// the receipt, trying again with backoff until the send succeeds, is
// refused for good, or has failed MaxSendAttempts times. Redelivered
// (after a crash), a send already recorded as sent or failed is skipped;
// one that was handed to the connector but not recorded is handed again
// with the same key, which the connector answers with its first receipt.
func (e *Engine) handleSend(ctx context.Context, ev Event) error {
	t := e.Tenant(ev.Tenant)
	s, err := t.Sends().Get(ctx, ev.ID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for s.Status == SendPending {
		rc, doc, err := e.trySend(ctx, t, s)
		if err == nil {
			return t.recordSent(ctx, s.ID, rc, doc, ev)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		permanent := errors.Is(err, plugins.ErrRejected) || errors.Is(err, plugins.ErrUnknown)
		if s, err = t.recordAttempt(ctx, s.ID, err, permanent, e.opts.MaxSendAttempts, ev); err != nil {
			return err
		}
		if s.Status == SendPending && !e.sleep(ctx, e.backoff(s.Attempts)) {
			return ctx.Err()
		}
	}
	return nil
}

// IdempotencyKey returns the key a send is handed to its connector with.
func (s Send) IdempotencyKey() string { return s.Tenant + "/" + s.ID }

// receipt is a connector's receipt and the channel it went through.
type receipt struct {
	plugins.Receipt
	Channel string
}

func (e *Engine) trySend(ctx context.Context, t *Tenant, s Send) (receipt, plugins.Document, error) {
	var doc plugins.Document
	msg := plugins.Message{Recipient: s.Recipient, Subject: s.Subject, Body: s.Body, IdempotencyKey: s.IdempotencyKey()}
	if s.Template != "" {
		r, err := e.opts.Plugins.Renderer(s.Renderer)
		if err != nil {
			return receipt{}, doc, err
		}
		doc, err = r.Render(ctx, plugins.RenderRequest{Template: s.Template, Format: s.Format, Data: *s.Document})
		if err != nil {
			return receipt{}, doc, err
		}
		msg.Attachments = []plugins.Attachment{{FileName: doc.FileName, MIMEType: doc.MIMEType, Content: doc.Content}}
	}
	c, err := e.opts.Plugins.Connector(s.Channel)
	if err != nil {
		return receipt{}, doc, err
	}
	prc, err := c.Send(ctx, msg)
	if err != nil {
		return receipt{}, doc, err
	}
	rc := receipt{Receipt: prc, Channel: e.channelKind(ctx, s.Channel, c)}
	e.log.Debug("sent", "tenant", t.id, "send", s.ID, "channel", s.Channel, "provider_id", rc.ProviderID)
	return rc, doc, nil
}

// channelKind returns the channel a connector serves (its Describe's
// Kind, remembered), or its name when it does not say.
func (e *Engine) channelKind(ctx context.Context, name string, c plugins.Connector) string {
	if k, ok := e.kinds.Load(name); ok {
		return k.(string)
	}
	ch, err := c.Describe(ctx)
	if err != nil || ch.Kind == "" {
		return name
	}
	e.kinds.Store(name, ch.Kind)
	return ch.Kind
}

// recordSent marks the send sent and puts an outbound interaction on the
// linked timelines, in one transaction.
// The events it writes carry the automation depth of created, the
// send's event, so that a loop through sends is caught like any other.
func (t *Tenant) recordSent(ctx context.Context, id string, rc receipt, doc plugins.Document, created Event) error {
	sends := t.Sends()
	return sends.update(ctx, func(tx storage.Tx) error {
		tx = causedBy(tx, created)
		s, err := sends.get(ctx, tx, id)
		if err != nil {
			return err
		}
		if s.Status != SendPending {
			return nil
		}
		now := t.Now()
		s.Status, s.ProviderID, s.SentAt, s.FileName, s.LastError = SendSent, rc.ProviderID, now, doc.FileName, ""
		if _, err := t.applyDelivery(ctx, tx, &s, rc.Status, ""); err != nil {
			return err
		}
		// A callback that came before this record did.
		early, err := tx.Get(ctx, earlyDeliveriesCollection, earlyDeliveryID(s.Channel, rc.ProviderID))
		switch {
		case err == nil:
			var d earlyDelivery
			if err := json.Unmarshal(early.Body, &d); err != nil {
				return err
			}
			st, _ := plugins.ParseDeliveryStatus(d.Status)
			if _, err := t.applyDelivery(ctx, tx, &s, st, d.Reason); err != nil {
				return err
			}
			if err := tx.Delete(ctx, earlyDeliveriesCollection, early.ID, 0); err != nil {
				return err
			}
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		if _, err := sends.replace(ctx, tx, s); err != nil {
			return err
		}
		summary := s.Subject
		if summary == "" {
			summary = firstLineOf(s.Body)
		}
		if doc.FileName != "" {
			summary += " (" + doc.FileName + ")"
		}
		in := Interaction{Channel: rc.Channel, Direction: Outbound, Summary: summary, Body: s.Body,
			Reference: rc.ProviderID, OccurredAt: now, Links: s.Links}
		in.ID, in.Owner = "send-"+s.ID, s.Owner
		_, err = t.Interactions().create(ctx, tx, in, now)
		return err
	})
}

// recordAttempt counts a failed try; a permanent failure, or the last
// allowed try, marks the send failed and says why on its timelines.
func (t *Tenant) recordAttempt(ctx context.Context, id string, cause error, permanent bool, maxAttempts int, created Event) (Send, error) {
	sends := t.Sends()
	var out Send
	err := sends.update(ctx, func(tx storage.Tx) error {
		tx = causedBy(tx, created)
		s, err := sends.get(ctx, tx, id)
		if err != nil {
			return err
		}
		if s.Status != SendPending {
			out = s
			return nil
		}
		s.Attempts++
		s.LastError = truncate(cause.Error(), 1000)
		if permanent || s.Attempts >= maxAttempts {
			s.Status = SendFailed
			why := "refused"
			if !permanent {
				why = fmt.Sprintf("gave up after %d attempts", s.Attempts)
			}
			err := appendLinked(ctx, tx, &s.Links, TimelineEntry{At: t.Now(), Type: TimelineSendFailed,
				Summary:       fmt.Sprintf("sending to %s via %s failed (%s): %s", s.Recipient, s.Channel, why, s.LastError),
				RefCollection: sendsCollection, RefID: s.ID})
			if err != nil {
				return err
			}
		}
		out, err = sends.replace(ctx, tx, s)
		return err
	})
	if err == nil {
		t.e.log.Warn("send failed", "tenant", t.id, "send", id, "attempt", out.Attempts, "status", out.Status, "err", cause)
	}
	return out, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return truncate(line, 200)
}

// receive runs a connector's Receive until the engine closes, starting
// it again with backoff when it fails (a crashed plugin, a store error).
func (e *Engine) receive(name string) {
	ctx := e.runCtx
	log := e.log.With("connector", name)
	t := e.Default()
	failures := 0
	for ctx.Err() == nil {
		c, err := e.opts.Plugins.Connector(name)
		if err == nil {
			channel := e.channelKind(ctx, name, c)
			err = c.Receive(ctx, func(ctx context.Context, ev plugins.InboundEvent) error {
				failures = 0
				return t.storeInbound(ctx, name, channel, ev)
			})
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		log.Warn("receiving stopped; starting again", "err", err, "failures", failures)
		e.sleep(ctx, e.backoff(failures))
	}
}

// inboundID makes the record ID of what an inbound event creates, so
// that a redelivered event creates nothing new.
func inboundID(prefix, connector, eventID string) string {
	sum := sha256.Sum256([]byte(connector + "\x00" + eventID))
	return prefix + hex.EncodeToString(sum[:16])
}

// storeInbound turns an inbound event into records through the normal
// domain calls. Each record's ID comes from the event's, so storing an
// event again (after a crash before its acknowledgement) finds what it
// created. An event whose data the domain refuses (a malformed email
// address in a form) is recorded as a dead letter rather than retried
// forever.
func (t *Tenant) storeInbound(ctx context.Context, connector, channel string, ev plugins.InboundEvent) error {
	var err error
	switch {
	case ev.Form != nil:
		err = t.storeForm(ctx, connector, ev)
	case ev.Message != nil:
		err = t.storeMessage(ctx, connector, channel, ev)
	case ev.Call != nil:
		err = t.storeCall(ctx, connector, ev)
	case ev.Delivery != nil:
		err = t.storeDelivery(ctx, connector, ev.Delivery)
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		t.e.log.Warn("inbound event refused", "connector", connector, "event", ev.ID, "err", err)
		return t.e.inboundDeadLetter(ctx, t.id, connector, ev, err)
	}
	return err
}

// createOnce creates rec unless a record with its ID exists.
func createOnce[T any](ctx context.Context, r *Records[T], rec T) (T, error) {
	out, err := r.Create(ctx, rec)
	if errors.Is(err, ErrExists) {
		return r.Get(ctx, r.k.meta(&rec).ID)
	}
	return out, err
}

// findContact returns the contact an email address or phone number
// belongs to, if exactly one does.
func (t *Tenant) findContact(ctx context.Context, email, phone string) (string, error) {
	if email == "" && phone == "" {
		return "", nil
	}
	ms, err := t.Contacts().Duplicates(ctx, Contact{Email: email, Phone: phone})
	if err != nil || len(ms) != 1 {
		return "", err
	}
	return ms[0].Record.ID, nil
}

func (t *Tenant) storeForm(ctx context.Context, connector string, ev plugins.InboundEvent) error {
	f := ev.Form
	first, last := f.Fields["first_name"], f.Fields["last_name"]
	if first == "" && last == "" {
		if n := strings.Fields(f.Fields["name"]); len(n) > 0 {
			first, last = n[0], strings.Join(n[1:], " ")
		}
	}
	source := f.Source
	if source == "" {
		source = "web-form"
	}
	lead := Lead{FirstName: first, LastName: last, Email: f.Fields["email"], Phone: f.Fields["phone"],
		Company: f.Fields["company"], Source: source}
	lead.ID = inboundID("lead-", connector, ev.ID)
	lead.Tags = []string{"form:" + f.Form}
	if f.Campaign != "" {
		// utm_campaign names a stored campaign, or is kept as a tag.
		_, err := t.Campaigns().Get(ctx, f.Campaign)
		switch {
		case err == nil:
			lead.CampaignID = f.Campaign
		case errors.Is(err, ErrNotFound):
			lead.Tags = append(lead.Tags, "campaign:"+f.Campaign)
		default:
			return err
		}
	}
	l, err := createOnce(ctx, t.Leads().Records, lead)
	if err != nil {
		return err
	}
	contactID, err := t.findContact(ctx, l.Email, l.Phone)
	if err != nil {
		return err
	}
	var body strings.Builder
	for _, k := range sortedKeys(f.Fields) {
		fmt.Fprintf(&body, "%s: %s\n", k, f.Fields[k])
	}
	in := Interaction{Channel: "web-form", Direction: Inbound, Summary: "form " + f.Form + " submitted",
		Body: body.String(), OccurredAt: ev.At, Links: Links{LeadID: l.ID, ContactID: contactID}}
	in.ID = inboundID("in-", connector, ev.ID)
	_, err = createOnce(ctx, t.Interactions(), in)
	return err
}

func (t *Tenant) storeMessage(ctx context.Context, connector, channel string, ev plugins.InboundEvent) error {
	m := ev.Message
	email, phone := "", ""
	if strings.Contains(m.From, "@") {
		email = m.From
		if a, err := parseAddress(m.From); err == nil {
			email = a
		}
	} else {
		phone = m.From
	}
	contactID, err := t.findContact(ctx, email, phone)
	if err != nil {
		return err
	}
	links := Links{ContactID: contactID}
	if contactID == "" {
		// Someone new wrote in: a lead, as a form would make.
		lead := Lead{Email: email, Phone: phone, Source: channel}
		lead.ID = inboundID("lead-", connector, ev.ID)
		l, err := createOnce(ctx, t.Leads().Records, lead)
		if err != nil {
			return err
		}
		links.LeadID = l.ID
	}
	summary := m.Subject
	if summary == "" {
		summary = firstLineOf(m.Body)
	}
	if summary == "" {
		summary = "(no text)"
	}
	in := Interaction{Channel: channel, Direction: Inbound, Summary: summary, Body: m.Body,
		OccurredAt: ev.At, Links: links}
	in.ID = inboundID("in-", connector, ev.ID)
	_, err = createOnce(ctx, t.Interactions(), in)
	return err
}

// storeCall records an ended call as a phone interaction on the
// caller's timeline (a started call waits for its end).
func (t *Tenant) storeCall(ctx context.Context, connector string, ev plugins.InboundEvent) error {
	c := ev.Call
	if c.State != "ended" {
		return nil
	}
	party := c.From
	if c.Direction == "outbound" {
		party = c.To
	}
	contactID, err := t.findContact(ctx, "", party)
	if err != nil {
		return err
	}
	links := Links{ContactID: contactID}
	if contactID == "" {
		lead := Lead{Phone: party, Source: "phone"}
		lead.ID = inboundID("lead-", connector, "call:"+c.CallID)
		l, err := createOnce(ctx, t.Leads().Records, lead)
		if err != nil {
			return err
		}
		links.LeadID = l.ID
	}
	dir := Inbound
	if c.Direction == "outbound" {
		dir = Outbound
	}
	in := Interaction{Channel: "phone", Direction: dir, Summary: fmt.Sprintf("call with %s, %s", party, c.Duration),
		Reference: c.RecordingRef, OccurredAt: ev.At.Add(-c.Duration), Links: links}
	in.ID = inboundID("in-", connector, "call:"+c.CallID)
	_, err = createOnce(ctx, t.Interactions(), in)
	return err
}

// storeDelivery moves on the send the connector gave the update's
// provider id. An update that arrives before the send is recorded as
// sent (a fast provider's callback) is kept and applied by recordSent.
func (t *Tenant) storeDelivery(ctx context.Context, connector string, d *plugins.DeliveryUpdate) error {
	sends := t.Sends()
	return sends.update(ctx, func(tx storage.Tx) error {
		pg, err := tx.Scan(ctx, sendsCollection, storage.Query{Index: "provider_id", Equal: d.ProviderID, Limit: 100})
		if err != nil {
			return err
		}
		for _, rec := range pg.Records {
			s, err := sends.decode(rec)
			if err != nil {
				return err
			}
			if s.Channel != connector {
				continue
			}
			if changed, err := t.applyDelivery(ctx, tx, &s, d.Status, d.Reason); err != nil || !changed {
				return err
			}
			_, err = sends.replace(ctx, tx, s)
			return err
		}
		return keepDelivery(ctx, tx, connector, d)
	})
}

// earlyDelivery is a delivery update kept until its send is recorded.
type earlyDelivery struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

const earlyDeliveriesCollection = "early_deliveries"

var earlyDeliveryCollection = storage.Collection{Name: earlyDeliveriesCollection}

func earlyDeliveryID(connector, providerID string) string {
	return inboundID("early-", connector, providerID)
}

// keepDelivery stores an update for a send not yet recorded, keeping the
// furthest one when several arrive.
func keepDelivery(ctx context.Context, tx storage.Tx, connector string, d *plugins.DeliveryUpdate) error {
	if d.ProviderID == "" {
		return nil
	}
	id := earlyDeliveryID(connector, d.ProviderID)
	rec, err := tx.Get(ctx, earlyDeliveriesCollection, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		rec = storage.Record{ID: id}
	case err != nil:
		return err
	default:
		var cur earlyDelivery
		if err := json.Unmarshal(rec.Body, &cur); err != nil {
			return err
		}
		if curSt, _ := plugins.ParseDeliveryStatus(cur.Status); !further(d.Status, curSt) {
			return nil
		}
	}
	rec.Body, err = json.Marshal(earlyDelivery{Status: d.Status.String(), Reason: d.Reason})
	if err != nil {
		return err
	}
	_, err = tx.Put(ctx, earlyDeliveriesCollection, rec)
	return err
}

// further reports whether status a is past b: sent < delivered < read,
// and failed ends it.
func further(a, b plugins.DeliveryStatus) bool {
	rank := func(s plugins.DeliveryStatus) int {
		switch s {
		case plugins.StatusQueued, plugins.StatusSent:
			return 1
		case plugins.StatusDelivered:
			return 2
		case plugins.StatusRead:
			return 3
		case plugins.StatusFailed:
			return 4
		}
		return 0
	}
	return rank(a) > rank(b)
}

// applyDelivery moves s to what the channel reported, if that is further
// than where it is: delivered, then read; failed only from sent or
// delivered (a message read was delivered). It reports whether s changed;
// a failure goes on the timelines, once.
func (t *Tenant) applyDelivery(ctx context.Context, tx storage.Tx, s *Send, status plugins.DeliveryStatus, reason string) (bool, error) {
	var next SendStatus
	switch status {
	case plugins.StatusDelivered:
		next = SendDelivered
	case plugins.StatusRead:
		next = SendRead
	case plugins.StatusFailed:
		next = SendFailed
	default:
		return false, nil
	}
	cur := map[SendStatus]int{SendPending: 0, SendSent: 1, SendDelivered: 2, SendRead: 3, SendFailed: 4}
	switch {
	case s.Status == SendFailed || cur[next] <= cur[s.Status]:
		return false, nil
	case next == SendFailed && s.Status == SendRead:
		return false, nil
	}
	s.Status = next
	if next == SendFailed {
		s.LastError = truncate("the channel reported: "+reason, 1000)
		err := appendLinked(ctx, tx, &s.Links, TimelineEntry{At: t.Now(), Type: TimelineSendFailed,
			Summary:       fmt.Sprintf("delivery to %s via %s failed: %s", s.Recipient, s.Channel, reason),
			RefCollection: sendsCollection, RefID: s.ID})
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// parseAddress returns the bare address of "Name <a@b.c>".
func parseAddress(s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", err
	}
	return a.Address, nil
}
