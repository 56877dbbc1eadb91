//! `authkeys.cmd.admin.{create,update,rotate,delete}-webhook` (R23): webhook endpoints are
//! state, so they are events in the log; `decide` checks the role (and an OAuth client's
//! `webhooks` scope). No secret passes here: the webhooks role derives an endpoint's secret
//! from its own key, the endpoint's id and its rotation (ADR 005).
//!
//! A new endpoint's id is derived from `(tailnet, commandId)` (keyed with the hashing key), so a
//! retried create names the same endpoint and is answered from the first result.

use authkeys_domain::AdminOp;
use authkeys_domain::webhook::WebhookOp;
use authkeys_events::{CommandId, EndpointId, TailnetId};
use authkeys_protocol::webhook::{
    CreateWebhookRequest, DeleteWebhookRequest, RotateWebhookRequest, UpdateWebhookRequest,
    WebhookIdReply,
};
use authkeys_protocol::{self as wire, Parsed};

use super::{Answer, Ctx, Request};

/// Characters of an endpoint id after its `w` (16 base62 ≈ 95 bits).
const ENDPOINT_ID_LEN: usize = 16;

/// The endpoint id a create with `command_id` in `tailnet` gets.
fn endpoint_id(ctx: &Ctx, tailnet: &str, command_id: &str) -> Result<EndpointId, wire::ErrorReply> {
    // The parse below re-validates both; an invalid one is refused there with its field.
    let material = format!("{tailnet}\n{command_id}");
    let digest = ctx
        .mint
        .fingerprint("webhook-endpoint-id", material.as_bytes());
    const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(1 + ENDPOINT_ID_LEN);
    id.push('w');
    for b in digest.iter().take(ENDPOINT_ID_LEN) {
        id.push(char::from(BASE62[usize::from(*b) % 62]));
    }
    EndpointId::parse(id).map_err(|e| super::internal("derive an endpoint id", e.why))
}

async fn answer(ctx: &Ctx, fingerprint: [u8; 32], parsed: Parsed<AdminOp>) -> Answer {
    let AdminOp::Webhook(
        WebhookOp::Create { endpoint_id, .. }
        | WebhookOp::Update { endpoint_id, .. }
        | WebhookOp::Rotate { endpoint_id }
        | WebhookOp::Delete { endpoint_id },
    ) = &parsed.op
    else {
        return Err(super::internal("parse a webhook command", "unexpected op"));
    };
    let endpoint_id = endpoint_id.to_string();
    super::append_admin(ctx, fingerprint, parsed).await?;
    super::ok(&WebhookIdReply {
        ok: wire::True,
        endpoint_id,
    })
}

pub(super) async fn create(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: CreateWebhookRequest = super::decode(req)?;
    let id = match (
        TailnetId::parse(dto.tailnet.as_str()),
        CommandId::parse(dto.command_id.as_str()),
    ) {
        (Ok(t), Ok(c)) => endpoint_id(ctx, t.as_str(), c.as_str())?,
        // Any id: the parse refuses the request, naming the field.
        _ => EndpointId::parse("w0").map_err(|e| super::internal("an endpoint id", e.why))?,
    };
    let parsed = dto.parse(id)?;
    answer(ctx, super::fingerprint(ctx, req, &dto), parsed).await
}

pub(super) async fn update(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: UpdateWebhookRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    answer(ctx, super::fingerprint(ctx, req, &dto), parsed).await
}

pub(super) async fn rotate(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: RotateWebhookRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    answer(ctx, super::fingerprint(ctx, req, &dto), parsed).await
}

pub(super) async fn delete(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: DeleteWebhookRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    answer(ctx, super::fingerprint(ctx, req, &dto), parsed).await
}
