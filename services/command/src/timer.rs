//! `authkeys.cmd.timer.fire`: the expiry timers found something due (R02, R08, R13, R14).
//! `decide` re-checks that it is still due exactly as scheduled; the reply says whether the
//! event was appended.

use authkeys_domain::Command;
use authkeys_events::Actor;
use authkeys_protocol::{TimerReply, TimerRequest, True};

use super::{Answer, Ctx, Request};

/// The idempotency scope of timer commands.
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
        TIMER_SCOPE,
        request_id,
        Actor::system(TIMER_ACTOR),
        fingerprint,
        Command::Timer { tailnet, due },
    )
    .await
    .map_err(super::refusal)?;
    super::ok(&TimerReply {
        ok: True,
        fired: !committed.envelopes.is_empty(),
    })
}
