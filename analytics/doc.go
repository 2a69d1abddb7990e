// Package analytics will compute the reports managers steer by — funnel and
// stage conversion, time in stage, plan vs fact, forecasts, campaign ROI,
// RFM, customer lifetime value, retention, NPS, CSI and CDI — reading
// through the crm engine, and render them as Go structs, CSV, JSON and
// charts.
//
// Nothing is implemented here yet; see the analytics issue.
package analytics
