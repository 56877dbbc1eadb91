//! `authkeys.cmd.admin.remove-user`, `.suspend-user` and `.restore-user`: the ops that name only
//! a user (R18, R21). Removing revokes the user's live API tokens and usable auth keys in the
//! same decision (their devices stay, R11); suspending makes every token of theirs answer 401
//! and every command of theirs refused until they are restored. Suspending a suspended user or
//! restoring an active one writes nothing and answers the same.

use authkeys_domain::AdminOp;
use authkeys_protocol::{self as wire, Parsed, WireError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Answer, Ctx, Request};

pub(super) async fn handle<T: DeserializeOwned + Serialize>(
    ctx: &Ctx,
    req: &Request<'_>,
    parse: fn(&T) -> Result<Parsed<AdminOp>, WireError>,
) -> Answer {
    let dto: T = super::decode(req)?;
    let parsed = parse(&dto)?;
    let user_id = match &parsed.op {
        AdminOp::RemoveUser { user_id }
        | AdminOp::SuspendUser { user_id }
        | AdminOp::RestoreUser { user_id } => user_id.to_string(),
        _ => return Err(super::internal("parse a user op", "unexpected op")),
    };
    super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    super::ok(&wire::UserIdReply {
        ok: wire::True,
        user_id,
    })
}
