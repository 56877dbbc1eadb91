//! `authkeys.cmd.admin.issue-token`: another API token for the actor. The token is derived from
//! `(tailnet, commandId)`, so a retry answers with the same token — within
//! `secret_replay_window_ms_max` of the first answer and while the token is usable
//! ([`super::reveal_secret`]); later without `apiKey`.

use authkeys_domain::AdminOp;
use authkeys_events::Event;
use authkeys_protocol::{self as wire, IssueTokenRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: IssueTokenRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let (token, issued) = super::new_token(ctx, &parsed, parsed.op);
    let token_id = token.token_id.clone();
    let tailnet = parsed.tailnet.clone();
    let parsed = parsed.map_op(|_| AdminOp::IssueToken { token });
    let committed = super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    // The first result's expiry, also on a retry.
    let expires = committed
        .envelopes
        .iter()
        .find_map(|env| match &env.event {
            Event::ApiTokenIssued(e) if e.token_id == token_id => Some(e.expires),
            _ => None,
        })
        .ok_or_else(|| super::internal("read an issued token", "no ApiTokenIssued event"))?;
    let now = ctx.now();
    let id = token_id.clone();
    let usable = super::view(
        ctx,
        move |s| Some(super::token_usable(s, &tailnet, &id, now)),
        "token not found",
    )
    .await?;
    super::ok(&wire::TokenReply {
        ok: wire::True,
        token_id: token_id.to_string(),
        api_key: super::reveal_secret(ctx, &committed, usable).then_some(issued.text),
        expires,
    })
}
