//! `authkeys.cmd.admin.issue-token`: another API token for the actor. The token is derived from
//! `(tailnet, commandId)`, so a retry answers with the same token.

use authkeys_domain::AdminOp;
use authkeys_events::Event;
use authkeys_protocol::{self as wire, IssueTokenRequest};

use super::{Answer, Ctx, Request};

pub(super) async fn handle(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: IssueTokenRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let (token, issued) = super::new_token(ctx, &parsed);
    let token_id = token.token_id.clone();
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
    super::ok(&wire::TokenReply {
        ok: wire::True,
        token_id: token_id.to_string(),
        api_key: issued.text,
        expires,
    })
}
