package crm

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/storage"
)

// Clock tells the engine what time it is. Inject one in tests to control
// timestamps, expiry and reminders without sleeping.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now returns f().
func (f ClockFunc) Now() time.Time { return f() }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Options configures Open. The zero value is a working configuration: a
// bbolt file named rapport.db in the working directory.
type Options struct {
	// Store is the storage backend. Defaults to a bbolt file at Path. The
	// engine closes a store it opened itself; a store passed here is left
	// open for the caller to close.
	Store storage.Store
	// Path is the bbolt file used when Store is nil. Defaults to "rapport.db".
	Path string
	// LockTimeout is how long Open waits for a bbolt file locked by another
	// process before failing with an error that wraps storage.ErrLocked.
	// Defaults to 1s.
	LockTimeout time.Duration
	// Clock is the source of time for timestamps. Defaults to the system clock.
	Clock Clock
	// Location is the time zone that days are counted in (what is due
	// "today"). Defaults to UTC.
	Location *time.Location
	// PhoneRegion is the ISO 3166 region (for example "GB") of phone
	// numbers written without a country code. With it, every phone number
	// is stored in E.164 form ("020 7946 0958" → "+442079460958"); without
	// it, only numbers starting with "+" are, and others keep their digits.
	PhoneRegion string
	// Logger receives the engine's logs. Defaults to discarding them.
	Logger *slog.Logger
	// DefaultTenant is the tenant of the Engine's own methods, for
	// single-tenant programs. Defaults to "default".
	DefaultTenant string
	// MaxDeliveryAttempts is how often a subscription handler is called for
	// one event before the event is recorded as a dead letter and skipped.
	// Defaults to 10.
	MaxDeliveryAttempts int
	// RetryBackoff is the wait after a handler's first failure; it doubles
	// with each further failure up to MaxRetryBackoff. Defaults to 100ms.
	RetryBackoff time.Duration
	// MaxRetryBackoff caps RetryBackoff. Defaults to 30s.
	MaxRetryBackoff time.Duration
	// TimerInterval, when positive, makes the engine run CheckTimers for
	// each of TimerTenants every TimerInterval, so that SLA breaches,
	// activity reminders and overdue notices fire by themselves, at most
	// one interval late. Zero leaves it to the host to call CheckTimers.
	TimerInterval time.Duration
	// TimerTenants are the tenants the timer checks. Defaults to
	// DefaultTenant.
	TimerTenants []string
	// PollInterval is how often idle subscriptions look for events that the
	// store did not signal (for example, written by another process).
	// Defaults to 1s.
	PollInterval time.Duration

	// Plugins are the document renderers and channel connectors sends go
	// through (a *plugins.Manager, or plugins.Static for in-process
	// ones). With it, the engine runs a sender that delivers Sends (see
	// SendDocument). The engine does not close it: close it after the
	// engine.
	Plugins Plugins
	// DocumentRenderer is the renderer SendDocument uses. Defaults to
	// "docs".
	DocumentRenderer string
	// Seller is the tenant's own details printed on documents.
	Seller plugins.Party
	// MaxSendAttempts is how often the sender tries a send before it
	// records it as failed. Defaults to 10; the waits between tries are
	// RetryBackoff, doubling up to MaxRetryBackoff.
	MaxSendAttempts int
	// Inbound names the connectors whose inbound events (emails, form
	// submissions, calls, delivery updates) the engine receives into
	// DefaultTenant: messages and calls become interactions on the
	// sender's timeline, form submissions leads, delivery updates move
	// their Send on.
	Inbound []string

	// MaxAutomationDepth is how long a chain of automation runs may be:
	// a run triggered by an event that a run of depth N wrote has depth
	// N+1, and one deeper than this is stopped (see Automations).
	// Defaults to 5.
	MaxAutomationDepth int
	// MaxAutomationAttempts is how often a failing automation run is
	// tried before it is recorded as failed. Defaults to 5; the waits
	// between tries are RetryBackoff, doubling up to MaxRetryBackoff.
	MaxAutomationAttempts int
	// HTTPClient makes the calls of webhook actions. Defaults to a client
	// with a 30s timeout. Its timeout (at most 30s) bounds each call, and
	// twice it is how long a run whose engine died mid-call waits before
	// another engine takes it up.
	HTTPClient *http.Client
}

// withDefaults returns a copy of o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.Path == "" {
		o.Path = "rapport.db"
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DefaultTenant == "" {
		o.DefaultTenant = "default"
	}
	if o.MaxDeliveryAttempts == 0 {
		o.MaxDeliveryAttempts = 10
	}
	if o.RetryBackoff == 0 {
		o.RetryBackoff = 100 * time.Millisecond
	}
	if o.MaxRetryBackoff == 0 {
		o.MaxRetryBackoff = 30 * time.Second
	}
	if o.PollInterval == 0 {
		o.PollInterval = time.Second
	}
	if o.DocumentRenderer == "" {
		o.DocumentRenderer = "docs"
	}
	if o.MaxSendAttempts == 0 {
		o.MaxSendAttempts = 10
	}
	if o.MaxAutomationDepth == 0 {
		o.MaxAutomationDepth = 5
	}
	if o.MaxAutomationAttempts == 0 {
		o.MaxAutomationAttempts = 5
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if len(o.TimerTenants) == 0 {
		o.TimerTenants = []string{o.DefaultTenant}
	}
	return o
}

func (o Options) validate() error {
	if err := storage.ValidateID("default tenant", o.DefaultTenant); err != nil {
		return err
	}
	switch {
	case o.LockTimeout < 0:
		return fmt.Errorf("%w: LockTimeout %s is negative", ErrInvalid, o.LockTimeout)
	case o.MaxAutomationDepth < 0 || o.MaxAutomationAttempts < 0:
		return fmt.Errorf("%w: MaxAutomationDepth and MaxAutomationAttempts must not be negative", ErrInvalid)
	case o.MaxSendAttempts < 0:
		return fmt.Errorf("%w: MaxSendAttempts %d is negative", ErrInvalid, o.MaxSendAttempts)
	case len(o.Inbound) > 0 && o.Plugins == nil:
		return fmt.Errorf("%w: Inbound needs Plugins", ErrInvalid)
	case o.MaxDeliveryAttempts < 0:
		return fmt.Errorf("%w: MaxDeliveryAttempts %d is negative", ErrInvalid, o.MaxDeliveryAttempts)
	case o.RetryBackoff < 0 || o.MaxRetryBackoff < 0:
		return fmt.Errorf("%w: retry backoff is negative", ErrInvalid)
	case o.PollInterval < 0:
		return fmt.Errorf("%w: PollInterval %s is negative", ErrInvalid, o.PollInterval)
	case o.TimerInterval < 0:
		return fmt.Errorf("%w: TimerInterval %s is negative", ErrInvalid, o.TimerInterval)
	}
	if o.PhoneRegion != "" && phonenumbers.GetCountryCodeForRegion(o.PhoneRegion) == 0 {
		return fmt.Errorf("%w: PhoneRegion %q is not a region with phone numbers", ErrInvalid, o.PhoneRegion)
	}
	for _, t := range o.TimerTenants {
		if err := storage.ValidateID("timer tenant", t); err != nil {
			return err
		}
	}
	return nil
}
