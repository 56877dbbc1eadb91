//! `authkeys.cmd.admin.add-user`: add a user with a role and their first API token (Owner and
//! Admin only). The user id and token are derived from `(tailnet, commandId)`, so a retry
//! answers with the same token — within `secret_replay_window_ms_max` of the first answer and
//! while the token is usable ([`super::reveal_secret`]); later without `apiKey`.

use authkeys_domain::AdminOp;
use authkeys_protocol::{self as wire, AddUserRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: AddUserRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let user_id = ctx
        .mint
        .derived_user_id(&parsed.tailnet, &parsed.command_id);
    let (token, issued) = super::new_token(ctx, &parsed, None);
    let token_id = token.token_id.clone();
    let tailnet = parsed.tailnet.clone();
    let parsed = parsed.map_op(|op| AdminOp::AddUser {
        user_id: user_id.clone(),
        login_name: op.login_name,
        role: op.role,
        token,
    });
    let committed = super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    let now = ctx.now();
    let missing = format!("user {user_id} not found");
    let (user, usable) = super::view(
        ctx,
        move |s| {
            let usable = super::token_usable(s, &tailnet, &token_id, now);
            Some((wire::user_view(s, &tailnet, &user_id)?, usable))
        },
        &missing,
    )
    .await?;
    super::ok(&wire::UserReply {
        ok: wire::True,
        user,
        api_key: super::reveal_secret(ctx, &committed, usable).then_some(issued.text),
    })
}
