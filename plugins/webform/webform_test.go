package webform_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapportcrm/rapport/plugins"
	"github.com/rapportcrm/rapport/plugins/webform"
)

func setup(t *testing.T, cfg webform.Config) (*httptest.Server, chan plugins.InboundEvent) {
	t.Helper()
	c, err := webform.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	events := make(chan plugins.InboundEvent, 20)
	go func() {
		_ = c.Receive(ctx, func(_ context.Context, ev plugins.InboundEvent) error { events <- ev; return nil })
	}()
	return srv, events
}

var contactUs = webform.Config{
	Forms:    map[string]webform.Form{"contact-us": {Required: []string{"name", "email"}, Optional: []string{"company", "message"}}},
	PBXToken: "pbx",
}

func postForm(t *testing.T, url string, vals url.Values, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(vals.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFormSubmissionBecomesEvent(t *testing.T) {
	srv, events := setup(t, contactUs)
	code, body := postForm(t, srv.URL+"/forms/contact-us?utm_campaign=winter-sale", url.Values{
		"name": {"  Zoë Łukasiewicz "}, "email": {"zoe@example.com"}, "company": {"Gdańsk Robotics"},
		"utm_source": {"newsletter"}, "redirect": {"/thanks"}})
	require.Equal(t, http.StatusSeeOther, code, body)
	ev := <-events
	require.NotNil(t, ev.Form)
	assert.Equal(t, &plugins.FormSubmission{Form: "contact-us", Source: "newsletter", Campaign: "winter-sale",
		Fields: map[string]string{"name": "Zoë Łukasiewicz", "email": "zoe@example.com", "company": "Gdańsk Robotics"}}, ev.Form)

	for _, evil := range []string{"https://evil.example/", "//evil.example/", `/\evil.example/`} {
		code, body = postForm(t, srv.URL+"/forms/contact-us", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "redirect": {evil}})
		assert.Equal(t, http.StatusOK, code, "no open redirect to %s", evil)
		assert.Equal(t, "Thank you!\n", body)
		<-events
	}
}

func TestBadSubmissionsAreRefused(t *testing.T) {
	srv, events := setup(t, contactUs)
	code, body := postForm(t, srv.URL+"/forms/contact-us", url.Values{"name": {" "}, "email": {"not-an-email"}, "phone": {"123"}})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "email: not an email address")
	assert.Contains(t, body, "name: required")
	assert.Contains(t, body, "phone: not a field of this form")

	code, _ = postForm(t, srv.URL+"/forms/contact-us", url.Values{"name": {"A"}, "email": {"a@example.com"}, "message": {strings.Repeat("x", webform.MaxFieldLength+1)}})
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = postForm(t, srv.URL+"/forms/nope", url.Values{"name": {"A"}})
	assert.Equal(t, http.StatusNotFound, code)
	resp, err := http.Get(srv.URL + "/forms/contact-us")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Empty(t, events, "nothing reached the host")
}

func TestRateLimit(t *testing.T) {
	cfg := contactUs
	cfg.RatePerMinute, cfg.Burst, cfg.TrustProxy = 1, 2, true
	srv, events := setup(t, cfg)
	vals := url.Values{"name": {"A"}, "email": {"a@example.com"}}
	for range 2 {
		code, _ := postForm(t, srv.URL+"/forms/contact-us", vals, "X-Forwarded-For", "203.0.113.7")
		require.Equal(t, http.StatusOK, code)
		<-events
	}
	code, _ := postForm(t, srv.URL+"/forms/contact-us", vals, "X-Forwarded-For", "10.9.9.9, 203.0.113.7")
	assert.Equal(t, http.StatusTooManyRequests, code, "what the client puts before the proxy's entry does not count")
	code, _ = postForm(t, srv.URL+"/forms/contact-us", vals, "X-Forwarded-For", "198.51.100.1")
	assert.Equal(t, http.StatusOK, code, "another client has its own budget")
	<-events
}

func TestCallEvents(t *testing.T) {
	srv, events := setup(t, contactUs)
	post := func(token, body string) int {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/calls", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusUnauthorized, post("x", `{"id":"c1","state":"started","from":"+4917"}`))
	require.Equal(t, http.StatusOK, post("pbx", `{"id":"c1","state":"started","from":"+491701234567","to":"+4930123"}`))
	ev := <-events
	assert.Equal(t, "call:c1:started", ev.ID)
	assert.Equal(t, &plugins.CallEvent{CallID: "c1", State: "started", From: "+491701234567", To: "+4930123", Direction: "inbound"}, ev.Call)
	require.Equal(t, http.StatusOK, post("pbx", `{"id":"c1","state":"ended","from":"+491701234567","duration_seconds":185,"recording_url":"https://pbx/rec/c1.mp3"}`))
	ev = <-events
	assert.Equal(t, int64(185), int64(ev.Call.Duration.Seconds()))
	assert.Equal(t, "https://pbx/rec/c1.mp3", ev.Call.RecordingRef)

	assert.Equal(t, http.StatusBadRequest, post("pbx", `{"id":"c2","state":"ringing","from":"+1"}`))
	assert.Equal(t, http.StatusBadRequest, post("pbx", `{"id":"c2","state":"ended","from":"+1","colour":"red"}`))
	assert.Equal(t, http.StatusBadRequest, post("pbx", `{"state":"ended"}`))
	assert.Empty(t, events)
}

func TestConfigAndSend(t *testing.T) {
	_, err := webform.New(webform.Config{})
	require.ErrorContains(t, err, "no forms")
	_, err = webform.New(webform.Config{Forms: map[string]webform.Form{"a/b": {}}})
	require.ErrorContains(t, err, "form name")
	_, err = webform.New(webform.Config{Forms: map[string]webform.Form{"f": {Required: []string{"x"}, Optional: []string{"x"}}}})
	require.ErrorContains(t, err, "both required and optional")
	c, err := webform.New(contactUs)
	require.NoError(t, err)
	_, err = c.Send(context.Background(), plugins.Message{Recipient: "x", IdempotencyKey: "k"})
	require.ErrorIs(t, err, plugins.ErrRejected)
}
