// Package automation describes automations: the routine a CRM does by
// itself, as data an ISV configures per tenant.
//
// # Model
//
// An [Automation] is a [Trigger], an optional condition (When, an
// expression in the shared rule language over record, contact, event and
// vars) and ordered [Action]s. A [Set] is a tenant's automations, loaded
// from YAML or JSON with [Load]; every problem is reported with its file
// and line.
//
// Triggers are a domain event (deal.stage_changed to or from a stage,
// segment.entered for a segment, any other event type), a schedule (a
// cron line in the tenant's time zone, once or for every record of an
// entity), a date field (N days before or after a contact's birthday, a
// contract's end, a deal's expected close; yearly for birthdays) or
// inactivity (no interaction with a contact for N days).
//
// Actions create an activity (for the record's owner, a user, a role or
// round-robin over a team), update fields, move the record to a stage,
// assign an owner, add or remove tags, award or deduct loyalty points,
// send a message through a channel connector, render and send a
// document, call a webhook, or emit a custom event.
//
// The package is pure: it loads, validates and compiles, and computes when
// schedules and dates fall due ([Trigger.Next], [DateTrigger.Due]). The
// crm package stores sets per tenant and runs them durably from the
// outbox and from stored alarms.
package automation
