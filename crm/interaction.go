package crm

import (
	"context"
	"time"

	"github.com/rapportcrm/rapport/storage"
)

// Direction says who started an interaction.
type Direction string

// Directions.
const (
	Inbound  Direction = "inbound"
	Outbound Direction = "outbound"
)

// Interaction is one contact with a customer on any channel: an email, a
// call, a meeting, a chat, a web-form submission. Creating one adds it to
// the timelines of the records it links to, at OccurredAt.
//
// Indexes for ListOptions.By: "owner", "tag", "channel", "contact",
// "account", "lead", "deal", "case".
//
// Events: interaction.created, interaction.updated, interaction.deleted.
type Interaction struct {
	Meta
	// Channel is required: "email", "phone", "sms", "meeting", "chat",
	// "web-form" or any other name.
	Channel   string    `json:"channel"`
	Direction Direction `json:"direction,omitempty"`
	// Summary is required: one line for the timeline.
	Summary string `json:"summary"`
	// Body is the full text, if kept.
	Body string `json:"body,omitempty"`
	// Reference points at what is stored elsewhere: a message ID, a call
	// recording, a document.
	Reference string `json:"reference,omitempty"`
	// OccurredAt defaults to the time of creation.
	OccurredAt time.Time `json:"occurred_at,omitzero"`
	Links
}

const interactionsCollection = "interactions"

var interactionKind = func() *kind[Interaction] {
	ix := []storage.Index{
		{Name: "owner", Field: "owner"},
		{Name: "tag", Field: "tags"},
		{Name: "channel", Field: "channel"},
	}
	k := newKind[Interaction]("interaction", storage.Collection{Name: interactionsCollection, Indexes: append(ix, linkIndexes()...)}, checkInteraction, nil)
	k.afterCreate = func(ctx context.Context, tx storage.Tx, in *Interaction) error {
		summary := in.Channel
		if in.Direction != "" {
			summary += " " + string(in.Direction)
		}
		return appendLinked(ctx, tx, &in.Links, TimelineEntry{At: in.OccurredAt, Type: TimelineInteraction,
			Summary: summary + ": " + in.Summary, RefCollection: interactionsCollection, RefID: in.ID})
	}
	k.checkUpdate = func(cur, next *Interaction, p *problems) {
		if cur.Links != next.Links || !cur.OccurredAt.Equal(next.OccurredAt) {
			p.add("links", "an interaction's links and time are fixed: they place it on timelines")
		}
	}
	return k
}()

func checkInteraction(ctx context.Context, tx storage.ReadTx, in, prev *Interaction, p *problems) error {
	var was Interaction
	if prev != nil {
		was = *prev
	}
	checkText(p, "channel", &in.Channel)
	if in.Channel == "" {
		p.add("channel", "is required")
	}
	switch in.Direction {
	case "", Inbound, Outbound:
	default:
		p.add("direction", "%q: want inbound or outbound", in.Direction)
	}
	checkText(p, "summary", &in.Summary)
	if in.Summary == "" {
		p.add("summary", "is required")
	}
	checkLongText(p, "body", in.Body)
	checkText(p, "reference", &in.Reference)
	if in.OccurredAt.IsZero() {
		in.OccurredAt = in.CreatedAt
	}
	in.OccurredAt = in.OccurredAt.UTC()
	checkTime(p, "occurred_at", in.OccurredAt)
	return checkLinks(ctx, tx, p, &in.Links, was.Links)
}

// Interactions returns the tenant's interactions.
func (t *Tenant) Interactions() *Records[Interaction] {
	return &Records[Interaction]{t: t, k: interactionKind}
}

// Interactions returns the interactions of the default tenant.
func (e *Engine) Interactions() *Records[Interaction] { return e.Default().Interactions() }
