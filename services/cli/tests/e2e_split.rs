//! End to end through a real nats-server with **separate processes**: `authkeys command`,
//! `authkeys project` and `authkeys api` (the binary, as `make run-split` starts them). Create a
//! key over HTTP, register a node with `authkeys register`, see the device over HTTP; then kill -9
//! the projection process and restart it, and see the views answer again with every event.

mod api_support;
mod proc_support;

use anyhow::{Context, ensure};
use proc_support::{
    Procs, authkeys, bootstrapped, create_key, free_port, get_ok, http, register, spawn_role,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_processes_create_register_list_and_survive_a_killed_projector() -> anyhow::Result<()>
{
    let (nats, dir, cmd_dir, token) = bootstrapped("command")?;
    let views_dir = dir.path().join("views");

    let port = free_port()?;
    let mut procs = Procs(vec![
        spawn_role("command", &nats.url(), &cmd_dir)?,
        spawn_role("project", &nats.url(), &views_dir)?,
        authkeys()
            .args([
                "api",
                "--nats",
                &nats.url(),
                "--http",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--hashing-key")
            .arg(cmd_dir.join("hashing.key"))
            .spawn()?,
    ]);

    // Wait until the gateway and the views answer, then create a key over HTTP.
    get_ok(port, "/api/v2/tailnet/-/keys", &token).await?;
    let created = create_key(
        port,
        &token,
        json!({"capabilities": {"devices": {"create": {"reusable": true, "tags": ["tag:ci"]}}}}),
    )
    .await?;
    let key = created["key"]
        .as_str()
        .context("the secret in the create response")?
        .to_owned();

    // Register through the registrar CLI.
    let device = register(&nats.url(), &key, "web-1", None)?;

    // Read-your-writes across processes: the device is listed at once.
    let listed = get_ok(port, "/api/v2/tailnet/-/devices", &token).await?;
    let devices = listed["devices"].as_array().context("devices")?;
    ensure!(
        devices.len() == 1 && devices[0]["nodeId"] == device["nodeId"],
        "{listed}"
    );
    ensure!(devices[0]["tags"] == json!(["tag:ci"]) && devices[0]["authKeyId"] == created["id"]);

    // kill -9 the projection process; a key created meanwhile is seen after its restart.
    procs.0[1].kill()?;
    procs.0[1].wait()?;
    let second = http(
        port,
        "POST",
        "/api/v2/tailnet/-/keys",
        &token,
        Some(json!({"capabilities": {"devices": {"create": {"reusable": false}}}})),
    )
    .await?;
    // Without views the gateway cannot authenticate the token: 503, never a wrong answer.
    ensure!(
        matches!(second.status, 200 | 503),
        "{} {:?}",
        second.status,
        second.body
    );
    procs.0[1] = spawn_role("project", &nats.url(), &views_dir)?;
    let keys = get_ok(port, "/api/v2/tailnet/-/keys", &token).await?;
    let n = keys["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .filter(|k| k["keyType"] == "auth")
        .count();
    ensure!(n == if second.status == 200 { 2 } else { 1 }, "{keys}");
    Ok(())
}
