package email

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rapportcrm/rapport/plugins"
)

// MaxInboundBytes is the largest inbound email the endpoint accepts.
const MaxInboundBytes = 25 << 20

// InboundEmail is what the inbound endpoint takes, as JSON: the shape mail
// providers' inbound webhooks can be mapped to. ID, when given (the
// provider's message id), makes a repeated post store the email once.
type InboundEmail struct {
	ID          string              `json:"id,omitempty"`
	From        string              `json:"from"`
	To          string              `json:"to"`
	Subject     string              `json:"subject"`
	Text        string              `json:"text"`
	Attachments []InboundAttachment `json:"attachments,omitempty"`
}

// InboundAttachment is a file of an InboundEmail; Content is base64.
type InboundAttachment struct {
	FileName string `json:"file_name"`
	MIMEType string `json:"mime_type"`
	Content  string `json:"content"`
}

// InboundHandler returns the HTTP endpoint for inbound email: it accepts
// a POST of an InboundEmail and answers 200 once the host has stored it,
// 400 for a malformed email, 401 without the configured token, and 503
// when the host did not store it within 30 s (the sender should retry).
func (c *Connector) InboundHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST an email as JSON", http.StatusMethodNotAllowed)
			return
		}
		if tok := c.cfg.InboundToken; tok != "" {
			got := r.Header.Get("Authorization")
			if subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+tok)) != 1 {
				http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
				return
			}
		}
		var in InboundEmail
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxInboundBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			http.Error(w, "malformed email: "+err.Error(), http.StatusBadRequest)
			return
		}
		ev, err := in.event()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if err := c.inbox.Deliver(ctx, ev); err != nil {
			if errors.Is(err, plugins.ErrInboxFull) {
				w.Header().Set("Retry-After", "60")
			}
			http.Error(w, "not stored yet, retry: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"stored": ev.ID})
	})
}

func (in InboundEmail) event() (plugins.InboundEvent, error) {
	if in.From == "" {
		return plugins.InboundEvent{}, errors.New("malformed email: from is required")
	}
	m := &plugins.InboundMessage{From: in.From, To: in.To, Subject: in.Subject, Body: in.Text}
	for i, a := range in.Attachments {
		b, err := base64.StdEncoding.DecodeString(a.Content)
		if err != nil {
			return plugins.InboundEvent{}, fmt.Errorf("malformed email: attachments[%d].content is not base64: %v", i, err)
		}
		m.Attachments = append(m.Attachments, plugins.Attachment{FileName: a.FileName, MIMEType: a.MIMEType, Content: b})
	}
	id := in.ID
	if id != "" {
		id = "email:" + id
	}
	return plugins.InboundEvent{ID: id, Message: m}, nil
}
