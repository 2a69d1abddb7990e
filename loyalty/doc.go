// Package loyalty will hold loyalty programs and segmentation: earning and
// burning rules written as expressions, an append-only points ledger with
// idempotency keys and FIFO expiry, tiers, rewards, segments, and a test
// harness that runs rules against fixture files without a database.
//
// Nothing is implemented here yet; see the loyalty issue.
package loyalty
