//! `authkeys.cmd.admin.revoke-key`: revoke one of the actor's own keys (R09, R11, R12).

use authkeys_domain::AdminOp;
use authkeys_protocol::{self as wire, RevokeKeyRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: RevokeKeyRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let tailnet = parsed.tailnet.clone();
    let AdminOp::RevokeKey { key_id } = &parsed.op else {
        return Err(super::internal("parse revoke-key", "unexpected op"));
    };
    let key_id = key_id.clone();
    super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    let now = ctx.now();
    let missing = format!("key {key_id} not found");
    let key = super::view(
        ctx,
        move |s| wire::key_view(s, &tailnet, &key_id, now),
        &missing,
    )
    .await?;
    super::ok(&wire::KeyReply {
        ok: wire::True,
        key,
    })
}
