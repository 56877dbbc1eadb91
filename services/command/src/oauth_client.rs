//! OAuth clients (R19): `authkeys.cmd.admin.create-client`, `…delete-client` and
//! `…issue-access-token`.
//!
//! A client's id, principal and secret, and an access token's id and secret, are derived from
//! `(tailnet, commandId)` like keys and API tokens ([`crate::mint`]): a retry answers the same,
//! with the secret only within the replay window while it is usable ([`super::reveal_secret`]).
//! The gateway verified the client's secret before it asks for an access token; `decide` checks
//! that the client still exists and that the scopes asked are its own.

use authkeys_domain::{AdminOp, Command, NewToken};
use authkeys_events::{Actor, ActorType, Event, Scope};
use authkeys_log::Idempotency;
use authkeys_protocol::{
    self as wire, ClientKey, CreateClientRequest, DeleteClientRequest, IssueAccessTokenRequest,
};

use super::{Answer, Ctx, Request};

/// An access token's lifetime: one hour, as Tailscale's.
pub const ACCESS_TOKEN_LIFETIME_SECS: i64 = 3600;

fn scope_names(scopes: &[Scope]) -> Vec<String> {
    scopes.iter().map(ToString::to_string).collect()
}

pub(super) async fn create(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: CreateClientRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let (client_id, issued) = ctx.mint.derived_client(&parsed.tailnet, &parsed.command_id);
    // A federated identity (R20) holds no secret: only its trust is recorded.
    let federated = parsed.op.federated.is_some();
    let secret_hash = (!federated).then_some(issued.secret_hash);
    let principal = ctx
        .mint
        .derived_principal(&parsed.tailnet, &parsed.command_id);
    let tailnet = parsed.tailnet.clone();
    let parsed = parsed.map_op(|r| AdminOp::CreateClient {
        client_id: client_id.clone(),
        principal,
        secret_hash,
        federated: r.federated,
        scopes: r.scopes,
        tags: r.tags,
        description: r.description,
    });
    let committed = super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    let created = committed
        .envelopes
        .iter()
        .find_map(|env| match &env.event {
            Event::OAuthClientCreated(e) if e.client_id == client_id => Some((env.time, e)),
            _ => None,
        })
        .ok_or_else(|| super::internal("read a new client", "no OAuthClientCreated event"))?;
    let (time, e) = created;
    let id = client_id.clone();
    let usable = super::view(
        ctx,
        move |s| {
            Some(
                s.tailnet(&tailnet)
                    .and_then(|t| t.clients.get(&id))
                    .is_some_and(|c| !c.deleted),
            )
        },
        "client not found",
    )
    .await?;
    let mut client = ClientKey::of(
        client_id.as_str(),
        e.description.as_str(),
        time,
        scope_names(&e.scopes),
        e.tags.iter().map(ToString::to_string).collect(),
        !usable,
        e.federated.as_ref(),
    );
    client.key =
        (!federated && super::reveal_secret(ctx, &committed, usable)).then_some(issued.text);
    super::ok(&wire::ClientReply {
        ok: wire::True,
        client,
    })
}

pub(super) async fn delete(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: DeleteClientRequest = super::decode(req)?;
    let parsed = dto.parse()?;
    let AdminOp::DeleteClient { client_id } = &parsed.op else {
        return Err(super::internal("parse delete-client", "unexpected op"));
    };
    let client_id = client_id.to_string();
    super::append_admin(ctx, super::fingerprint(ctx, req, &dto), parsed).await?;
    super::ok(&wire::ClientIdReply {
        ok: wire::True,
        client_id,
    })
}

pub(super) async fn issue_access_token(ctx: &Ctx, req: &Request<'_>) -> Answer {
    let dto: IssueAccessTokenRequest = super::decode(req)?;
    let p = dto.parse()?;
    let (token_id, issued) = ctx.mint.derived_access_token(&p.tailnet, &p.command_id);
    let command = Command::IssueAccessToken {
        tailnet: p.tailnet.clone(),
        client_id: p.client_id.clone(),
        token: NewToken {
            token_id: token_id.clone(),
            secret_hash: issued.secret_hash,
            expires: ctx.now().plus_seconds(ACCESS_TOKEN_LIFETIME_SECS),
        },
        scopes: p.scopes,
    };
    super::record_ids(&p.command_id, Some(&p.tailnet));
    let actor = Actor {
        actor_type: ActorType::Oauth,
        id: p.client_id.to_string(),
        login_name: None,
    };
    let committed = super::append(
        ctx,
        Idempotency::Recorded,
        p.tailnet.as_str(),
        p.command_id,
        actor,
        super::fingerprint(ctx, req, &dto),
        command,
    )
    .await
    .map_err(super::refusal)?;
    let (expires, scopes) = committed
        .envelopes
        .iter()
        .find_map(|env| match &env.event {
            Event::AccessTokenIssued(e) if e.token_id == token_id => {
                Some((e.expires, scope_names(&e.scopes)))
            }
            _ => None,
        })
        .ok_or_else(|| super::internal("read an access token", "no AccessTokenIssued event"))?;
    let now = ctx.now();
    let (tailnet, id) = (p.tailnet.clone(), token_id.clone());
    let usable = super::view(
        ctx,
        move |s| Some(super::token_usable(s, &tailnet, &id, now)),
        "token not found",
    )
    .await?;
    super::ok(&wire::AccessTokenReply {
        ok: wire::True,
        token_id: token_id.to_string(),
        access_token: super::reveal_secret(ctx, &committed, usable).then_some(issued.text),
        expires,
        scopes,
    })
}
