package plugins

import (
	"context"
	"time"
)

// Renderer fills document templates (commercial proposal, contract,
// invoice) with CRM data.
type Renderer interface {
	// Templates lists the templates the renderer can fill.
	Templates(ctx context.Context) ([]Template, error)
	// Render fills a template. An unknown template or format, or data the
	// template cannot use, is an error wrapping ErrRejected.
	Render(ctx context.Context, req RenderRequest) (Document, error)
}

// Template describes one document template.
type Template struct {
	// Name is what RenderRequest.Template takes, e.g. "invoice".
	Name string
	// Title is a human-readable name, e.g. "Invoice".
	Title string
	// Formats lists the formats the template renders to.
	Formats []Format
}

// Format is a document format.
type Format string

// Formats every reference renderer supports.
const (
	PDF  Format = "pdf"
	HTML Format = "html"
)

// RenderRequest asks for one document.
type RenderRequest struct {
	Template string
	Format   Format
	Data     DocumentData
}

// Document is a rendered document.
type Document struct {
	Content  []byte
	MIMEType string
	FileName string
}

// Connector sends messages through one channel (email, SMS, a messenger)
// and receives what arrives on it.
type Connector interface {
	// Describe says which channel the connector serves and what it can do.
	Describe(ctx context.Context) (Channel, error)
	// Send delivers one message. Sending a message again with the same
	// IdempotencyKey must not deliver it twice: the connector returns the
	// first receipt. A message the channel refuses for good (a malformed
	// address, say) is an error wrapping ErrRejected; other errors are
	// worth retrying.
	Send(ctx context.Context, msg Message) (Receipt, error)
	// Receive calls deliver with each inbound event, one at a time, until
	// ctx is done or deliver fails, and returns why it stopped. An event is
	// done once deliver returns nil for it; one whose deliver failed, or
	// that was being delivered when Receive stopped, is delivered again by
	// the next Receive. Connectors without inbound events block until ctx
	// is done. Inbox implements Receive for connectors.
	Receive(ctx context.Context, deliver func(context.Context, InboundEvent) error) error
}

// Channel describes a connector.
type Channel struct {
	// Kind is the channel: "email", "sms", "messenger", "webform",
	// "telephony", or another name the connector documents.
	Kind string
	// Capabilities lists what the connector does, e.g. CapSend.
	Capabilities []string
}

// Capabilities a connector may declare.
const (
	CapSend           = "send"
	CapAttachments    = "attachments"
	CapInbound        = "inbound"
	CapDeliveryStatus = "delivery_status"
)

// Message is one outgoing message.
type Message struct {
	// Recipient is an address in the channel's terms: an email address, a
	// phone number, a chat id.
	Recipient   string
	Subject     string
	Body        string
	Attachments []Attachment
	// IdempotencyKey identifies the message across retries; required.
	IdempotencyKey string
	// Metadata carries channel-specific fields, such as "reply_to".
	Metadata map[string]string
}

// Attachment is a file sent with or received in a message.
type Attachment struct {
	FileName string
	MIMEType string
	Content  []byte
}

// Receipt is the channel's answer to a send.
type Receipt struct {
	// ProviderID is the channel's id of the message (an SMTP Message-ID, a
	// gateway's message id).
	ProviderID string
	Status     DeliveryStatus
}

// DeliveryStatus is how far a message got.
type DeliveryStatus int

// Delivery statuses, in the order a message goes through them.
const (
	StatusUnknown DeliveryStatus = iota
	StatusQueued
	StatusSent
	StatusDelivered
	StatusRead
	StatusFailed
)

var statusNames = [...]string{"unknown", "queued", "sent", "delivered", "read", "failed"}

// String returns the status's name, e.g. "delivered".
func (s DeliveryStatus) String() string {
	if s < 0 || int(s) >= len(statusNames) {
		return "unknown"
	}
	return statusNames[s]
}

// ParseDeliveryStatus returns the status a name (as String returns it)
// stands for, and false for an unknown name.
func ParseDeliveryStatus(name string) (DeliveryStatus, bool) {
	for i, n := range statusNames {
		if n == name {
			return DeliveryStatus(i), true
		}
	}
	return StatusUnknown, false
}

// InboundEvent is something that arrived on a channel. Exactly one of
// Message, Form, Call and Delivery is set.
type InboundEvent struct {
	// ID is unique per connector; the host stores an event once per ID.
	ID string
	At time.Time

	Message  *InboundMessage
	Form     *FormSubmission
	Call     *CallEvent
	Delivery *DeliveryUpdate
}

// InboundMessage is a message a customer sent: an email, an SMS.
type InboundMessage struct {
	From, To    string
	Subject     string
	Body        string
	Attachments []Attachment
}

// FormSubmission is a web form a visitor filled in.
type FormSubmission struct {
	// Form names the form, e.g. "contact-us".
	Form   string
	Fields map[string]string
	// Source and Campaign say where the visitor came from (e.g. utm_source
	// and utm_campaign).
	Source   string
	Campaign string
}

// CallEvent is a phone call reported by a PBX.
type CallEvent struct {
	CallID string
	// State is "started" or "ended".
	State    string
	From, To string
	// Direction is "inbound" or "outbound".
	Direction string
	// Duration is set when the call ended.
	Duration time.Duration
	// RecordingRef locates the call's recording at the PBX, if any.
	RecordingRef string
}

// DeliveryUpdate is news about a message sent earlier.
type DeliveryUpdate struct {
	ProviderID     string
	IdempotencyKey string
	Status         DeliveryStatus
	Reason         string
}
