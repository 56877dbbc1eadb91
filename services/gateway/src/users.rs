//! `GET /tailnet/{tailnet}/users[?type=&role=]` and `GET /users/{id}`: the tailnet's users in
//! Tailscale's user shape (the Go client's `Users().List`, the PyPI client's `users()`).
//!
//! Who sees whom (R21): a Member sees only themselves (another user is 404, as a user that does
//! not exist); every other role sees every user of the tailnet.

use authkeys_events::UserId;
use authkeys_protocol::parse_role;
use authkeys_protocol::query::{UsersGetQuery, UsersListQuery};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use serde::Serialize;

use super::body::query_param;
use super::error::ApiError;
use super::{AppState, Authed, json, resolve_tailnet};

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
        Some(other) => Err(ApiError::bad_request(format!(
            "role: must be owner, admin, it-admin, network-admin, member, auditor or \
             billing-admin, not {other:?}"
        ))),
    }
}

pub(super) async fn list(
    State(shared): State<AppState>,
    authed: Authed,
    Path(tailnet): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
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
    let missing = || ApiError::not_found(format!("user {id} not found"));
    let user_id = UserId::parse(id.clone()).map_err(|_| missing())?;
    if sees_only_self(&authed) && user_id.as_str() != authed.caller.user_id {
        return Err(missing());
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
