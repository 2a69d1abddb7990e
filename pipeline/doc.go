// Package pipeline will hold configurable sales pipelines: named state
// machines of stages (order, probability, time norm, required fields,
// won/lost terminals), allowed transitions with guard expressions, and stage
// history. It is pure logic with no storage; the crm engine persists state.
//
// Nothing is implemented here yet; see the pipelines issue.
package pipeline
