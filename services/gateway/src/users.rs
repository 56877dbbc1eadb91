//! `GET /tailnet/{tailnet}/users[?type=&role=]` and `GET /users/{id}`: the tailnet's users in
//! Tailscale's user shape (the Go client's `Users().List`, the PyPI client's `users()`); and
//! `POST /users/{id}/role {"role"}`, `/delete`, `/suspend`, `/restore` (R18, R21; the PyPI
//! client's `set_user_role`, `delete_user`, `suspend_user`, `restore_user`), each answered as
//! Tailscale does: 200 with an empty body.
//!
//! Who sees whom (R21): a Member sees only themselves (another user is 404, as a user that does
//! not exist); every other role sees every user of the tailnet. Who changes whom is the
//! domain's to decide (`decide`: Owner, Admin and IT admin; the Owner alone touches the Owner;
//! nobody removes or suspends themselves or the Owner): a refusal is 403 or 409 with
//! `{"message"}`, an unknown user 404, and nothing is written.

use authkeys_events::UserId;
use authkeys_protocol::query::{UsersGetQuery, UsersListQuery};
use authkeys_protocol::{
    ChangeRoleRequest, RemoveUserRequest, RestoreUserRequest, SuspendUserRequest, UserIdReply,
    UserReply, parse_role, subject,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::body::{JsonBody, OptionalJsonBody, query_param};
use super::devices::Empty;
use super::error::ApiError;
use super::{AppState, Authed, command_id, json, resolve_tailnet};

#[derive(Serialize)]
struct Users {
    users: Vec<authkeys_protocol::User>,
}

/// Whether the caller sees only themselves.
fn sees_only_self(authed: &Authed) -> bool {
    authed.caller.role == "member"
}

/// `?type=`: `member` (Tailscale's default) and `all` list the tailnet's users; `shared` lists
/// none (authkeys has no users shared in from other tailnets).
fn wants_members(q: Option<&str>) -> Result<bool, ApiError> {
    match query_param(q, "type") {
        None | Some("" | "member" | "all") => Ok(true),
        Some("shared") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "type: must be member, shared or all, not {other:?}"
        ))),
    }
}

/// `?role=`: one role as the API spells it.
fn role_filter(q: Option<&str>) -> Result<Option<String>, ApiError> {
    match query_param(q, "role") {
        None | Some("") => Ok(None),
        Some(r) if parse_role(r).is_some() => Ok(Some(r.to_owned())),
        Some(other) => Err(bad_role(other)),
    }
}

/// 400 naming `role`.
fn bad_role(other: &str) -> ApiError {
    ApiError::bad_request(format!(
        "role: must be owner, admin, it-admin, network-admin, member, auditor or billing-admin, \
         not {other:?}"
    ))
}

pub(super) async fn list(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    authed.scope(authkeys_events::Scope::UsersRead)?;
    let members = wants_members(q.as_deref())?;
    let role = role_filter(q.as_deref())?;
    resolve_tailnet(&shared, &authed, &tailnet).await?;
    let mut users = Vec::new();
    let mut after: Option<String> = None;
    // `type=shared` lists nobody: no page is asked.
    let mut more = members;
    while more {
        let page = shared
            .nats
            .query(&UsersListQuery {
                tailnet: authed.caller.tailnet.clone(),
                after: after.take(),
                limit: None,
                min_seq: Some(authed.head),
            })
            .await?;
        users.extend(page.users.into_iter().filter(|u| {
            role.as_ref().is_none_or(|r| u.role == *r)
                && (!sees_only_self(&authed) || u.id == authed.caller.user_id)
        }));
        more = page.next.is_some();
        after = page.next;
    }
    Ok(json(&Users { users }))
}

pub(super) async fn get(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authed.scope(authkeys_events::Scope::UsersRead)?;
    let user_id = user_id(&id)?;
    if sees_only_self(&authed) && user_id.as_str() != authed.caller.user_id {
        return Err(ApiError::not_found(format!("user {id} not found")));
    }
    let one = shared
        .nats
        .query(&UsersGetQuery {
            tailnet: authed.caller.tailnet.clone(),
            user_id: user_id.to_string(),
            min_seq: Some(authed.head),
        })
        .await?;
    Ok(json(&one.user))
}

/// `POST /users/{id}/role`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleBody {
    /// The new role, as the API spells it.
    pub role: String,
}

/// The user id of a path: one that cannot be a user id is 404, like an unknown one.
fn user_id(id: &str) -> Result<UserId, ApiError> {
    super::path_id("user", id, UserId::parse)
}

/// `POST /users/{id}/role {"role"}`: a role as the API spells it (else 400 naming `role`);
/// `owner` transfers ownership (the Owner only, R18).
pub(super) async fn set_role(
    State(shared): State<AppState>,
    authed: Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RoleBody>,
) -> Result<Response, ApiError> {
    authed.user_only()?;
    let user_id = user_id(&id)?;
    if parse_role(&body.role).is_none() {
        return Err(bad_role(&body.role));
    }
    let request = ChangeRoleRequest {
        command_id: command_id(&headers)?,
        tailnet: authed.caller.tailnet.clone(),
        actor: authed.caller.user_id.clone(),
        user_id: user_id.to_string(),
        role: body.role,
    };
    let _: UserReply = shared.nats.request(subject::CHANGE_ROLE, &request).await?;
    Ok(StatusCode::OK.into_response())
}

/// A handler of a request that names only a user (`POST /users/{id}/<op>`, no body or `{}`),
/// answered as Tailscale does: 200, empty body.
macro_rules! user_op {
    ($(#[$doc:meta])* $name:ident => $request:ident, $subject:path) => {
        $(#[$doc])*
        pub(super) async fn $name(
            State(shared): State<AppState>,
            authed: Authed,
            Path(id): Path<String>,
            headers: HeaderMap,
            OptionalJsonBody(Empty {}): OptionalJsonBody<Empty>,
        ) -> Result<Response, ApiError> {
            authed.user_only()?;
            let request = $request {
                command_id: command_id(&headers)?,
                tailnet: authed.caller.tailnet.clone(),
                actor: authed.caller.user_id.clone(),
                user_id: user_id(&id)?.to_string(),
            };
            let _: UserIdReply = shared.nats.request($subject, &request).await?;
            Ok(StatusCode::OK.into_response())
        }
    };
}

user_op!(
    /// `POST /users/{id}/delete`: removes the user; their API tokens answer 401 from their next
    /// request, their usable auth keys are revoked, their devices stay (R11, R18).
    delete => RemoveUserRequest, subject::REMOVE_USER
);
user_op!(
    /// `POST /users/{id}/suspend`: the user's tokens answer 401 until they are restored (R21).
    suspend => SuspendUserRequest, subject::SUSPEND_USER
);
user_op!(
    /// `POST /users/{id}/restore`: a suspended user's tokens work again (R21).
    restore => RestoreUserRequest, subject::RESTORE_USER
);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn type_and_role_filters() {
        assert!(wants_members(None).expect("default"));
        assert!(wants_members(Some("type=all")).expect("all"));
        assert!(!wants_members(Some("type=shared")).expect("shared"));
        assert_eq!(
            wants_members(Some("type=guest")).expect_err("bad").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            role_filter(Some("role=it-admin"))
                .expect("valid")
                .as_deref(),
            Some("it-admin")
        );
        assert_eq!(role_filter(None).expect("none"), None);
        assert_eq!(
            role_filter(Some("role=king")).expect_err("bad").status,
            StatusCode::BAD_REQUEST
        );
    }
}
