//! `authkeys.cmd.admin.add-user`: add a user with a role and their first API token (Owner and
//! Admin only). The user id and token are derived from `(tailnet, commandId)`, so a retry
//! answers with the same token.

use authkeys_domain::wire::{self, AddUserRequest, Parsed};
use authkeys_domain::{AdminOp, NewToken};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: AddUserRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let user_id = ctx
        .secrets
        .derived_user_id(&parsed.tailnet, &parsed.command_id);
    let (token_id, issued) = ctx
        .secrets
        .derived_api_token(&parsed.tailnet, &parsed.command_id);
    let tailnet = parsed.tailnet.clone();
    let lifetime_secs = i64::from(ctx.config.token_lifetime_days) * 86_400;
    let op = AdminOp::AddUser {
        user_id: user_id.clone(),
        login_name: parsed.op.login_name,
        role: parsed.op.role,
        token: NewToken {
            token_id,
            secret_hash: issued.secret_hash,
            expires: ctx.now().plus_seconds(lifetime_secs),
        },
    };
    let parsed = Parsed {
        command_id: parsed.command_id,
        tailnet: parsed.tailnet,
        actor: parsed.actor,
        op,
    };
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
        api_key: issued.text,
    })
}
