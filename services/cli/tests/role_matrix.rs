//! The role matrix of R21 (and R07), as a table: every route × every role, against the real
//! stack, with the status each role must get; after every refusal the log file is byte for byte
//! what it was (a refused request writes nothing).
//!
//! | route | Owner | Admin | IT admin | Network admin | Member | Auditor | Billing admin |
//! |---|---|---|---|---|---|---|---|
//! | generate a key | 200 | 200 | 200 | 200 | 403 | 403 | 403 |
//! | list keys (own) | 200 | 200 | 200 | 200 | 200 | 200 | 200 |
//! | list devices | all | all | all | all | own | all | 403 |
//! | read another's device | 200 | 200 | 200 | 200 | 404 | 200 | 403 |
//! | change a device (authorize, tags, key, expire, delete) | 200 | 200 | 200 | 403 | 403 | 403 | 403 |
//! | read settings | 200 | 200 | 200 | 200 | 200 | 200 | 200 |
//! | change settings | 200 | 200 | 403 | 403 | 403 | 403 | 403 |
//! | list users | all | all | all | all | self | all | all |
//! | add a user | 200 | 200 | 200 | 403 | 403 | 403 | 403 |
//! | change a role, suspend, restore, remove a Member | 200 | 200 | 200 | 403 | 403 | 403 | 403 |
//! | read the audit log | 200 | 200 | 403 | 403 | 403 | 200 | 403 |

mod api_support;

use anyhow::{Context, ensure};
use api_support::Stack;
use serde_json::{Value, json};

/// The roles, as the API spells them, in the table's column order.
const ROLES: [&str; 7] = [
    "owner",
    "admin",
    "it-admin",
    "network-admin",
    "member",
    "auditor",
    "billing-admin",
];

/// One row: a route and the status of each role, in [`ROLES`] order.
struct Row {
    what: &'static str,
    method: &'static str,
    /// The path, with `{device}` for a device of the Owner's and `{target}` for a Member (one
    /// of each per role, so every role's change finds its own) and `{role}` for the role's name.
    path: &'static str,
    body: Option<Value>,
    statuses: [u16; 7],
}

fn rows() -> Vec<Row> {
    let window = "/api/v2/tailnet/-/logging/configuration?start=2000-01-01T00:00:00Z&end=2100-01-01T00:00:00Z";
    let key = json!({"capabilities": {"devices": {"create": {"reusable": true}}}});
    vec![
        Row {
            what: "generate a key",
            method: "POST",
            path: "/api/v2/tailnet/-/keys",
            body: Some(key),
            statuses: [200, 200, 200, 200, 403, 403, 403],
        },
        Row {
            what: "list keys",
            method: "GET",
            path: "/api/v2/tailnet/-/keys",
            body: None,
            statuses: [200; 7],
        },
        Row {
            what: "list devices",
            method: "GET",
            path: "/api/v2/tailnet/-/devices",
            body: None,
            statuses: [200, 200, 200, 200, 200, 200, 403],
        },
        Row {
            what: "read a device",
            method: "GET",
            path: "/api/v2/device/{device}",
            body: None,
            statuses: [200, 200, 200, 200, 404, 200, 403],
        },
        Row {
            what: "authorize a device",
            method: "POST",
            path: "/api/v2/device/{device}/authorized",
            body: Some(json!({"authorized": true})),
            statuses: [200, 200, 200, 403, 403, 403, 403],
        },
        Row {
            what: "tag a device",
            method: "POST",
            path: "/api/v2/device/{device}/tags",
            body: Some(json!({"tags": ["tag:x"]})),
            statuses: [200, 200, 200, 403, 403, 403, 403],
        },
        Row {
            what: "disable key expiry",
            method: "POST",
            path: "/api/v2/device/{device}/key",
            body: Some(json!({"keyExpiryDisabled": true})),
            statuses: [200, 200, 200, 403, 403, 403, 403],
        },
        Row {
            what: "expire a device",
            method: "POST",
            path: "/api/v2/device/{device}/expire",
            body: None,
            statuses: [200, 200, 200, 403, 403, 403, 403],
        },
        Row {
            what: "delete a device",
            method: "DELETE",
            path: "/api/v2/device/{device}",
            body: None,
            statuses: [200, 200, 200, 403, 403, 403, 403],
        },
        Row {
            what: "read settings",
            method: "GET",
            path: "/api/v2/tailnet/-/settings",
            body: None,
            statuses: [200; 7],
        },
        Row {
            what: "change settings",
            method: "PATCH",
            path: "/api/v2/tailnet/-/settings",
            body: Some(json!({"httpsEnabled": true})),
            statuses: [200, 200, 403, 403, 403, 403, 403],
        },
        Row {
            what: "list users",
            method: "GET",
            path: "/api/v2/tailnet/-/users",
            body: None,
            statuses: [200; 7],
        },
        Row {
            what: "add a user",
            method: "POST",
            path: "/api/v2/tailnet/-/users",
            body: Some(json!({"loginName": "new-{role}@example.com", "role": "member"})),
            statuses: [200, 200, 200, 403, 403, 403, 403],
        },
        Row {
            what: "read the audit log",
            method: "GET",
            path: window,
            body: None,
            statuses: [200, 200, 403, 403, 403, 200, 403],
        },
    ]
}

/// `{role}` in the body's strings, replaced.
fn for_role(body: &Value, role: &str) -> Value {
    match body {
        Value::String(s) => Value::String(s.replace("{role}", role)),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), for_role(v, role)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r21_every_route_for_every_role() -> anyhow::Result<()> {
    let s = Stack::start().await?;
    let mut tokens = vec![s.owner_token.clone()];
    let mut logins = vec!["o@example.com".to_owned()];
    for role in &ROLES[1..] {
        let login = format!("{role}@example.com");
        tokens.push(s.add_user(&login, role).await?.1);
        logins.push(login);
    }
    // The Owner's key; one device of the Owner's per role, so each role's change or delete
    // finds its own target in the same state.
    let key = s
        .create_key(&s.owner_token, json!({"reusable": true}))
        .await?;
    let mut devices = Vec::new();
    let mut targets = Vec::new();
    for role in ROLES {
        devices.push(s.register_key(&key, &format!("dev-{role}")).await?);
        targets.push(
            s.add_user(&format!("target-{role}@example.com"), "member")
                .await?
                .0,
        );
    }
    // The Member's column: they own none of these devices.
    let member = ROLES
        .iter()
        .position(|r| *r == "member")
        .context("member")?;

    let mut failures = Vec::new();
    for row in rows() {
        for (i, role) in ROLES.iter().enumerate() {
            let path = row
                .path
                .replace("{device}", &devices[i])
                .replace("{role}", role);
            let body = row.body.as_ref().map(|b| for_role(b, role));
            let before = s.log_events()?;
            let a = s.call(row.method, &path, Some(&tokens[i]), body).await?;
            let want = row.statuses[i];
            if a.status != want {
                failures.push(format!(
                    "{} as {role}: {} (want {want}) {}",
                    row.what, a.status, a.body
                ));
                continue;
            }
            if want >= 400 {
                ensure!(
                    a.body.get("message").is_some_and(Value::is_string),
                    "{} as {role}: no message: {:?}",
                    row.what,
                    a
                );
                ensure!(
                    s.log_events()? == before,
                    "{} as {role}: the refusal wrote to the log",
                    row.what
                );
            }
        }
    }
    ensure!(failures.is_empty(), "role matrix:\n{}", failures.join("\n"));

    // Sight: a Member lists no device of another's; everyone else lists them all.
    let listed = |i: usize| {
        let s = &s;
        let token = tokens[i].clone();
        async move {
            let v = s
                .expect(200, "GET", "/api/v2/tailnet/-/devices", &token, None)
                .await?;
            anyhow::Ok(v["devices"].as_array().map(Vec::len).unwrap_or_default())
        }
    };
    ensure!(
        listed(member).await? == 0,
        "a Member sees only their own devices"
    );
    let remaining = listed(0).await?;
    for i in [1, 2, 3, 5] {
        ensure!(
            listed(i).await? == remaining,
            "{} sees every device",
            ROLES[i]
        );
    }
    let users = s
        .expect(200, "GET", "/api/v2/tailnet/-/users", &tokens[member], None)
        .await?;
    ensure!(
        users["users"].as_array().map(Vec::len) == Some(1)
            && users["users"][0]["loginName"] == logins[member],
        "a Member sees only themselves: {users}"
    );
    s.stop().await
}
