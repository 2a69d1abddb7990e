package plugins

import "fmt"

// Static hands out in-process renderers and connectors by name, the way
// Manager hands out plugin processes: give it to an engine (or anything
// that looks plugins up by name) to run without subprocesses, as tests do.
type Static struct {
	Renderers  map[string]Renderer
	Connectors map[string]Connector
}

// Renderer returns the renderer of that name, or ErrUnknown.
func (s Static) Renderer(name string) (Renderer, error) {
	if r, ok := s.Renderers[name]; ok {
		return r, nil
	}
	return nil, fmt.Errorf("plugins: %w: no renderer named %q", ErrUnknown, name)
}

// Connector returns the connector of that name, or ErrUnknown.
func (s Static) Connector(name string) (Connector, error) {
	if c, ok := s.Connectors[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("plugins: %w: no connector named %q", ErrUnknown, name)
}
