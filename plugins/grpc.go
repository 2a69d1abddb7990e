package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rapportcrm/rapport/plugins/pluginpb"
)

// Handshake is the go-plugin handshake of Rapport plugins. ProtocolVersion
// changes only when the protocol changes incompatibly; adding an RPC or a
// field does not change it (servers embed the Unimplemented servers, and
// protobuf ignores unknown fields).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "RAPPORT_PLUGIN",
	MagicCookieValue: "d6f0b1a2-rapport-plugin-v1",
}

// Names under which plugins are dispensed, one per kind.
const (
	KindRenderer  = "renderer"
	KindConnector = "connector"
)

// rendererPlugin and connectorPlugin are the go-plugin glue: the server
// side wraps an implementation in a gRPC server, the client side returns a
// Go value implementing the interface over a gRPC connection.
type rendererPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Renderer
}

func (p *rendererPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterDocumentRendererServer(s, &rendererServer{impl: p.impl})
	return nil
}

func (p *rendererPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &rendererClient{c: pluginpb.NewDocumentRendererClient(c)}, nil
}

type connectorPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Connector
}

func (p *connectorPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterChannelConnectorServer(s, &connectorServer{impl: p.impl})
	return nil
}

func (p *connectorPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &connectorClient{c: pluginpb.NewChannelConnectorClient(c)}, nil
}

// toStatus turns an implementation's error into a gRPC status the host
// maps back (fromStatus).
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrRejected):
		return status.Error(codes.InvalidArgument, strings.TrimPrefix(err.Error(), ErrRejected.Error()+": "))
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// errConnection marks a call that failed because the connection to the
// plugin failed; the manager finds out whether the process died.
var errConnection = errors.New("connection to plugin lost")

// fromStatus maps a gRPC error from a plugin to ours.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch s.Code() {
	case codes.InvalidArgument:
		return fmt.Errorf("%w: %s", ErrRejected, s.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%w: %s", ErrTimeout, s.Message())
	case codes.Canceled:
		return fmt.Errorf("%w: %s", context.Canceled, s.Message())
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", errConnection, s.Message())
	case codes.ResourceExhausted:
		return fmt.Errorf("%w: too large (%s)", ErrRejected, s.Message())
	case codes.Unimplemented:
		return fmt.Errorf("%w: the plugin does not implement this call (%s)", ErrRejected, s.Message())
	}
	return errors.New(s.Message())
}

type rendererServer struct {
	pluginpb.UnimplementedDocumentRendererServer
	impl Renderer
}

func (s *rendererServer) Templates(ctx context.Context, _ *pluginpb.TemplatesRequest) (*pluginpb.TemplatesResponse, error) {
	ts, err := s.impl.Templates(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pluginpb.TemplatesResponse{}
	for _, t := range ts {
		pt := &pluginpb.Template{Name: t.Name, Title: t.Title}
		for _, f := range t.Formats {
			pt.Formats = append(pt.Formats, string(f))
		}
		resp.Templates = append(resp.Templates, pt)
	}
	return resp, nil
}

func (s *rendererServer) Render(ctx context.Context, req *pluginpb.RenderRequest) (*pluginpb.RenderResponse, error) {
	r := RenderRequest{Template: req.GetTemplate(), Format: Format(req.GetFormat())}
	if err := json.Unmarshal(req.GetData(), &r.Data); err != nil {
		return nil, toStatus(Rejectf("document data is not valid JSON: %v", err))
	}
	doc, err := s.impl.Render(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginpb.RenderResponse{Content: doc.Content, MimeType: doc.MIMEType, FileName: doc.FileName}, nil
}

type rendererClient struct {
	c pluginpb.DocumentRendererClient
}

func (c *rendererClient) Templates(ctx context.Context) ([]Template, error) {
	resp, err := c.c.Templates(ctx, &pluginpb.TemplatesRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	var ts []Template
	for _, pt := range resp.GetTemplates() {
		t := Template{Name: pt.GetName(), Title: pt.GetTitle()}
		for _, f := range pt.GetFormats() {
			t.Formats = append(t.Formats, Format(f))
		}
		ts = append(ts, t)
	}
	return ts, nil
}

func (c *rendererClient) Render(ctx context.Context, req RenderRequest) (Document, error) {
	data, err := json.Marshal(req.Data)
	if err != nil {
		return Document{}, fmt.Errorf("plugins: encoding document data: %w", err)
	}
	resp, err := c.c.Render(ctx, &pluginpb.RenderRequest{Template: req.Template, Format: string(req.Format), Data: data})
	if err != nil {
		return Document{}, fromStatus(err)
	}
	return Document{Content: resp.GetContent(), MIMEType: resp.GetMimeType(), FileName: resp.GetFileName()}, nil
}

type connectorServer struct {
	pluginpb.UnimplementedChannelConnectorServer
	impl Connector
}

func (s *connectorServer) Describe(ctx context.Context, _ *pluginpb.DescribeRequest) (*pluginpb.DescribeResponse, error) {
	ch, err := s.impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginpb.DescribeResponse{Kind: ch.Kind, Capabilities: ch.Capabilities}, nil
}

func (s *connectorServer) Send(ctx context.Context, req *pluginpb.SendRequest) (*pluginpb.SendResponse, error) {
	msg := Message{
		Recipient:      req.GetRecipient(),
		Subject:        req.GetSubject(),
		Body:           req.GetBody(),
		Attachments:    attachmentsFromPB(req.GetAttachments()),
		IdempotencyKey: req.GetIdempotencyKey(),
		Metadata:       req.GetMetadata(),
	}
	rc, err := s.impl.Send(ctx, msg)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pluginpb.SendResponse{ProviderId: rc.ProviderID, Status: pluginpb.DeliveryStatus(rc.Status)}, nil
}

// Receive runs the implementation's Receive, sending each event on the
// stream and waiting for the host's Ack of it before the next.
func (s *connectorServer) Receive(stream grpc.BidiStreamingServer[pluginpb.Ack, pluginpb.InboundEvent]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	acks := make(chan string)
	hostDone := make(chan struct{})
	// The reader ends when the stream does, which is when this handler
	// returns at the latest.
	go func() {
		for {
			a, err := stream.Recv()
			if err != nil {
				close(hostDone)
				cancel()
				return
			}
			select {
			case acks <- a.GetEventId():
			case <-ctx.Done():
				return
			}
		}
	}()
	err := s.impl.Receive(ctx, func(ctx context.Context, ev InboundEvent) error {
		if err := stream.Send(eventToPB(ev)); err != nil {
			return err
		}
		for {
			select {
			case id := <-acks:
				if id == ev.ID {
					return nil
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	select {
	case <-hostDone:
		return nil // the host ended the stream: nothing to report
	default:
	}
	if stream.Context().Err() != nil {
		return nil
	}
	return toStatus(err)
}

type connectorClient struct {
	c pluginpb.ChannelConnectorClient
}

func (c *connectorClient) Describe(ctx context.Context) (Channel, error) {
	resp, err := c.c.Describe(ctx, &pluginpb.DescribeRequest{})
	if err != nil {
		return Channel{}, fromStatus(err)
	}
	return Channel{Kind: resp.GetKind(), Capabilities: resp.GetCapabilities()}, nil
}

func (c *connectorClient) Send(ctx context.Context, msg Message) (Receipt, error) {
	resp, err := c.c.Send(ctx, &pluginpb.SendRequest{
		Recipient:      msg.Recipient,
		Subject:        msg.Subject,
		Body:           msg.Body,
		Attachments:    attachmentsToPB(msg.Attachments),
		IdempotencyKey: msg.IdempotencyKey,
		Metadata:       msg.Metadata,
	})
	if err != nil {
		return Receipt{}, fromStatus(err)
	}
	return Receipt{ProviderID: resp.GetProviderId(), Status: DeliveryStatus(resp.GetStatus())}, nil
}

// Receive opens the event stream and acknowledges each event once
// deliver returned nil for it.
func (c *connectorClient) Receive(ctx context.Context, deliver func(context.Context, InboundEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.c.Receive(ctx)
	if err != nil {
		return fromStatus(err)
	}
	for {
		pe, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fromStatus(err)
		}
		if err := deliver(ctx, eventFromPB(pe)); err != nil {
			return err
		}
		if err := stream.Send(&pluginpb.Ack{EventId: pe.GetId()}); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fromStatus(err)
		}
	}
}

func attachmentsToPB(as []Attachment) []*pluginpb.Attachment {
	var out []*pluginpb.Attachment
	for _, a := range as {
		out = append(out, &pluginpb.Attachment{FileName: a.FileName, MimeType: a.MIMEType, Content: a.Content})
	}
	return out
}

func attachmentsFromPB(as []*pluginpb.Attachment) []Attachment {
	var out []Attachment
	for _, a := range as {
		out = append(out, Attachment{FileName: a.GetFileName(), MIMEType: a.GetMimeType(), Content: a.GetContent()})
	}
	return out
}

func eventToPB(ev InboundEvent) *pluginpb.InboundEvent {
	pe := &pluginpb.InboundEvent{Id: ev.ID, AtUnixNano: ev.At.UnixNano()}
	switch {
	case ev.Message != nil:
		m := ev.Message
		pe.Event = &pluginpb.InboundEvent_Message{Message: &pluginpb.InboundMessage{
			From: m.From, To: m.To, Subject: m.Subject, Body: m.Body, Attachments: attachmentsToPB(m.Attachments)}}
	case ev.Form != nil:
		f := ev.Form
		pe.Event = &pluginpb.InboundEvent_Form{Form: &pluginpb.FormSubmission{
			Form: f.Form, Fields: f.Fields, Source: f.Source, Campaign: f.Campaign}}
	case ev.Call != nil:
		c := ev.Call
		pe.Event = &pluginpb.InboundEvent_Call{Call: &pluginpb.CallEvent{
			CallId: c.CallID, State: c.State, From: c.From, To: c.To, Direction: c.Direction,
			DurationSeconds: int64(c.Duration / time.Second), RecordingRef: c.RecordingRef}}
	case ev.Delivery != nil:
		d := ev.Delivery
		pe.Event = &pluginpb.InboundEvent_Delivery{Delivery: &pluginpb.DeliveryUpdate{
			ProviderId: d.ProviderID, IdempotencyKey: d.IdempotencyKey,
			Status: pluginpb.DeliveryStatus(d.Status), Reason: d.Reason}}
	}
	return pe
}

func eventFromPB(pe *pluginpb.InboundEvent) InboundEvent {
	ev := InboundEvent{ID: pe.GetId(), At: time.Unix(0, pe.GetAtUnixNano()).UTC()}
	switch e := pe.GetEvent().(type) {
	case *pluginpb.InboundEvent_Message:
		m := e.Message
		ev.Message = &InboundMessage{From: m.GetFrom(), To: m.GetTo(), Subject: m.GetSubject(), Body: m.GetBody(),
			Attachments: attachmentsFromPB(m.GetAttachments())}
	case *pluginpb.InboundEvent_Form:
		f := e.Form
		ev.Form = &FormSubmission{Form: f.GetForm(), Fields: f.GetFields(), Source: f.GetSource(), Campaign: f.GetCampaign()}
	case *pluginpb.InboundEvent_Call:
		c := e.Call
		ev.Call = &CallEvent{CallID: c.GetCallId(), State: c.GetState(), From: c.GetFrom(), To: c.GetTo(),
			Direction: c.GetDirection(), Duration: time.Duration(c.GetDurationSeconds()) * time.Second,
			RecordingRef: c.GetRecordingRef()}
	case *pluginpb.InboundEvent_Delivery:
		d := e.Delivery
		ev.Delivery = &DeliveryUpdate{ProviderID: d.GetProviderId(), IdempotencyKey: d.GetIdempotencyKey(),
			Status: DeliveryStatus(d.GetStatus()), Reason: d.GetReason()}
	}
	return ev
}

// ServeRenderer serves a renderer as a plugin process: a plugin's main
// calls it and it returns when the host ends the plugin. It must be
// started by a host (plugins.Manager); run by hand it says so and exits.
func ServeRenderer(impl Renderer) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{KindRenderer: &rendererPlugin{impl: impl}},
		GRPCServer:      grpcServer,
	})
}

// MaxMessageBytes bounds one message between host and plugin (a rendered
// document, a message with attachments): 64 MiB.
const MaxMessageBytes = 64 << 20

func grpcServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes))...)
}

// ServeConnector serves a connector as a plugin process, as ServeRenderer
// does a renderer.
func ServeConnector(impl Connector) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{KindConnector: &connectorPlugin{impl: impl}},
		GRPCServer:      grpcServer,
	})
}
