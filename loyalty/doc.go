// Package loyalty holds loyalty programs and segmentation, usable on its
// own with no database: a rule author's test harness (loyalty/loyaltytest)
// imports it directly.
//
// # Model
//
// A [Program] (loaded from YAML or JSON with [Load], or built in Go and
// compiled with [Program.Compile]) has earning [Rule]s written as
// expressions (the shared internal/expression language: member.tier,
// order.earning, daysSince(member.last_order_at), ...), [Tier]s with a
// [Downgrade] policy, [Reward]s, threshold and personal [Discount]s and
// [PunchCard]s. [Program.Evaluate] turns a [Member] and an [Event] into a
// [Result]: [Effect]s as data (points, pending points, reversals,
// discounts, rewards, punches, tier changes) and a trace of which rules
// matched and why. It writes nothing, so it is also the dry run.
//
// Points live in an [Account]: an append-only journal of [Entry] values
// (earn, pending, activate, spend, expire, reverse, adjust, transfer),
// each under an idempotency key, and the [Lot]s they build. Spends take
// the lots that expire soonest; expiry removes exactly a lot's remainder;
// the balance always equals the sum of the journal and of the lots
// (less any debt, where the program allows negative balances).
// [Ledger] holds many accounts in memory and serialises access; [Book]
// runs a program on a Ledger, applying the effects of each event.
//
// [Segments] are named boolean rules over a member's profile and metrics,
// plus static lists, evaluated per member ([Segments.Of]), on change
// ([Segments.Diff]) or in bulk over every CPU ([Segments.Evaluate]).
package loyalty
