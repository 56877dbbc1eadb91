//! `authkeys.cmd.timer.fire`: the expiry timers found something due (R02, R08, R13, R14).
//! `decide` re-checks that it is still due exactly as scheduled; the reply says whether the
//! event was appended.
//!
//! Timer commands are appended **without idempotency** ([`authkeys_log::Idempotency::Unrecorded`]):
//! their `requestId`s are predictable (`timer-<kind>-<id>-<seq>-<deadline>`), so if the first
//! request under an id were recorded, anyone who sent that id first — with a bogus deadline that
//! decides nothing — would turn the real firing into a replay of an empty result (or a
//! `conflict`), suppressing `KeyExpired`/`NodeExpired` for good. Nothing is lost without it:
//! `decide` re-checks the state, so a firing repeated after it appended (a crash between the
//! answer and the schedule's update) decides nothing, and one that decides nothing writes
//! nothing. The deadline is the state's too: a key's or node's `expires` must be the one named,
//! and an ephemeral node goes no sooner than its `lastSeen` + this service's
//! `ephemeral_inactivity_ms`, whatever `due` the request names.

use std::time::Duration;

use authkeys_domain::Command;
use authkeys_events::Actor;
use authkeys_protocol::{TimerReply, TimerRequest, True};

use super::{Answer, Ctx, Request};

/// The idempotency scope of timer commands (recorded nowhere: see the module docs).
pub const TIMER_SCOPE: &str = "timers";
/// The system actor of timer events.
pub const TIMER_ACTOR: &str = "timers";

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: TimerRequest = super::decode(req)?;
    let (request_id, tailnet, due) = dto.parse()?;
    super::record_ids(&request_id, Some(&tailnet));
    let fingerprint = super::fingerprint(ctx, req, &dto);
    let committed = super::append(
        ctx,
        authkeys_log::Idempotency::Unrecorded,
        TIMER_SCOPE,
        request_id,
        Actor::system(TIMER_ACTOR),
        fingerprint,
        Command::Timer {
            tailnet,
            due,
            ephemeral_inactivity: Duration::from_millis(ctx.config.ephemeral_inactivity_ms),
        },
    )
    .await
    .map_err(super::refusal)?;
    super::ok(&TimerReply {
        ok: True,
        fired: !committed.envelopes.is_empty(),
    })
}
