//! `authkeys.cmd.admin.change-role`: change a user's role (Owner, Admin and IT admin, R21). Only
//! the Owner makes an Owner, and doing so transfers ownership: the Owner becomes an Admin in the
//! same decision (R18). The gateway reads every request's role at the log head, so the change
//! applies from the user's next request on.

use authkeys_domain::AdminOp;
use authkeys_protocol::{self as wire, ChangeRoleRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: ChangeRoleRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let tailnet = parsed.tailnet.clone();
    let AdminOp::ChangeRole { user_id, .. } = &parsed.op else {
        return Err(super::internal("parse change-role", "unexpected op"));
    };
    let user_id = user_id.clone();
    super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    let missing = format!("user {user_id} not found");
    let user = super::view(
        ctx,
        move |s| wire::user_view(s, &tailnet, &user_id),
        &missing,
    )
    .await?;
    super::ok(&wire::UserReply {
        ok: wire::True,
        user,
        api_key: None,
    })
}
