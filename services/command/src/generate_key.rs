//! `authkeys.cmd.admin.generate-key`: generate an auth key (R01–R08, R10).
//!
//! The key id and secret are derived from `(tailnet, commandId)` ([`crate::mint`]), so a retry
//! answers with the same secret; only its keyed hash goes into the command. A retry carries the
//! secret only within `secret_replay_window_ms_max` of the first answer and while the key is
//! usable ([`super::reveal_secret`]); later it answers the key without `key`.

use authkeys_domain::AdminOp;
use authkeys_protocol::{self as wire, GenerateKeyRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: GenerateKeyRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let (key_id, issued) = ctx
        .mint
        .derived_auth_key(&parsed.tailnet, &parsed.command_id);
    let tailnet = parsed.tailnet.clone();
    let parsed = parsed.map_op(|request| AdminOp::GenerateKey {
        key_id: key_id.clone(),
        secret_hash: issued.secret_hash,
        request,
    });
    let committed = super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    let now = ctx.now();
    let missing = format!("key {key_id} not found");
    let (mut key, usable) = super::view(
        ctx,
        move |s| {
            let usable = s
                .tailnet(&tailnet)
                .and_then(|t| t.keys.get(&key_id))
                .is_some_and(|k| k.usable(now));
            Some((wire::key_view(s, &tailnet, &key_id, now)?, usable))
        },
        &missing,
    )
    .await?;
    key.key = super::reveal_secret(ctx, &committed, usable).then_some(issued.text);
    super::ok(&wire::KeyReply {
        ok: wire::True,
        key,
    })
}
