//! `authkeys.cmd.admin.generate-key`: generate an auth key (R01–R08, R10).
//!
//! The key id and secret are derived from `(tailnet, commandId)` ([`crate::secrets`]), so a retry
//! answers with the same secret; only its keyed hash goes into the command.

use authkeys_domain::AdminOp;
use authkeys_protocol::{self as wire, GenerateKeyRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: GenerateKeyRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let (key_id, issued) = ctx
        .secrets
        .derived_auth_key(&parsed.tailnet, &parsed.command_id);
    let tailnet = parsed.tailnet.clone();
    let parsed = parsed.map_op(|request| AdminOp::GenerateKey {
        key_id: key_id.clone(),
        secret_hash: issued.secret_hash,
        request,
    });
    super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    let now = ctx.now();
    let missing = format!("key {key_id} not found");
    let mut key = super::view(
        ctx,
        move |s| wire::key_view(s, &tailnet, &key_id, now),
        &missing,
    )
    .await?;
    key.key = Some(issued.text);
    super::ok(&wire::KeyReply {
        ok: wire::True,
        key,
    })
}
