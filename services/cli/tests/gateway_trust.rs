//! Issue 11 ("Trust boundaries"), the gateway's findings, against the real stack (nats-server,
//! the command service, the views and the gateway on port 0): the gateway's key material
//! (finding 2), rate limits charged before verification (6), secrets in caches (11) and slow
//! clients (12). Each test is named after its finding and failed before its fix.

mod api_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use api_support::{Answer, Stack, send_on};
use authkeys_command::mint::{DERIVATION_KEY_FILE, HASHING_KEY_FILE, Mint};
use authkeys_domain::secret::{self, SecretKind};
use authkeys_events::{CommandId, TailnetId};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn create_body() -> Bytes {
    Bytes::from(
        serde_json::to_vec(&json!({
            "capabilities": { "devices": { "create": { "reusable": true } } }
        }))
        .expect("JSON"),
    )
}

fn bearer(token: &str) -> (String, String) {
    ("authorization".to_owned(), format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_02_the_gateways_key_material_cannot_reproduce_an_auth_key() -> anyhow::Result<()> {
    // An admin generates a key over HTTP with a known command id (`Idempotency-Key`); the
    // tailnet id and the command id are public (every envelope carries them). With only what
    // the gateway holds (hashing.key), the key cannot be re-derived: not with the scheme before
    // the split, not with the hashing key as the derivation key. The derivation key is another
    // file, and a gateway given a key folder holding hashing.key alone works in full.
    let s = Stack::start().await?;
    let command = "finding-02-key";
    let headers = [
        bearer(&s.owner_token),
        ("content-type".to_owned(), "application/json".to_owned()),
        ("idempotency-key".to_owned(), command.to_owned()),
    ];
    let a = s
        .raw("POST", "/api/v2/tailnet/-/keys", &headers, create_body())
        .await?;
    ensure!(a.status == 200, "{a:?}");
    let key = a.body["key"].as_str().context("key")?.to_owned();
    let key_id = a.body["id"].as_str().context("id")?.to_owned();

    let hashing =
        authkeys_log::keys::load_or_create_key(&s.dir.path().join(HASHING_KEY_FILE), false)?;
    let tailnet = TailnetId::parse(s.tailnet.as_str()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let command_id = CommandId::parse(command).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for (scheme, guess) in [
        ("derived from the hashing key", Mint::from_key(hashing)),
        ("the hashing key itself", Mint::from_keys(hashing, hashing)),
    ] {
        let (id, issued) = guess.derived_auth_key(&tailnet, &command_id);
        ensure!(
            issued.text != key && id.as_str() != key_id,
            "the hashing key re-derives the key ({scheme})"
        );
    }
    let presented = secret::parse(SecretKind::Auth, &key).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    ensure!(presented.id == key_id, "the key names its id");
    // The derivation key is its own file, and it is what derives the key.
    let derivation =
        authkeys_log::keys::load_or_create_key(&s.dir.path().join(DERIVATION_KEY_FILE), false)?;
    ensure!(derivation != hashing, "two independent keys");
    let (_, rederived) =
        Mint::from_keys(hashing, derivation).derived_auth_key(&tailnet, &command_id);
    ensure!(
        rederived.text == key,
        "derivation.key is what derives retry-stable secrets"
    );

    // A gateway whose key folder holds hashing.key alone (as on a host of its own) serves the
    // Owner, and its retry of the same command still answers the same key (from the command
    // service, which holds the derivation key).
    let gateway_dir = tempfile::tempdir()?;
    std::fs::copy(
        s.dir.path().join(HASHING_KEY_FILE),
        gateway_dir.path().join(HASHING_KEY_FILE),
    )?;
    let settings = authkeys_gateway::ApiSettings::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        s.nats.url(),
        gateway_dir.path().join(HASHING_KEY_FILE),
    );
    let gateway = authkeys_gateway::Gateway::build(settings).await?;
    let port = gateway.port();
    let stop = CancellationToken::new();
    let task = tokio::spawn(gateway.run(stop.clone()));
    let again = api_support::send(
        port,
        "POST",
        "/api/v2/tailnet/-/keys",
        &headers,
        create_body(),
    )
    .await?;
    ensure!(
        again.status == 200 && again.body["key"] == json!(key),
        "{again:?}"
    );
    let files: Vec<_> = std::fs::read_dir(gateway_dir.path())?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    ensure!(
        files == [HASHING_KEY_FILE],
        "the gateway made no file: {files:?}"
    );
    stop.cancel();
    task.await??;
    Ok(())
}

/// One HTTP/1.1 request on a fresh connection from the client address `from`.
async fn send_from(from: IpAddr, port: u16, path: &str, token: &str) -> anyhow::Result<Answer> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    let req = hyper::Request::builder()
        .method("GET")
        .uri(path)
        .header("host", format!("127.0.0.1:{port}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    send_on(stream, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_06_forged_tokens_cannot_rate_limit_the_victim() -> anyhow::Result<()> {
    // A forger knows the victim's token id (ids are public) and sends well-formed tokens with
    // that id and a wrong secret, from its own address, far past both bursts. The forger's
    // address is limited (429); the victim's own token, from another address, still answers 200.
    const BURST: u32 = 5;
    let s = Stack::start_with(|a| {
        a.token_requests_per_second = 1;
        a.token_requests_burst = BURST;
        a.address_requests_per_second = 1;
        a.address_requests_burst = 2 * BURST;
    })
    .await?;
    let victim = s.owner_token.clone();
    let id = secret::parse(SecretKind::Api, &victim)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .id;
    let forged = secret::issue(SecretKind::Api, &id, &[7; 32], &[7; 32]).text;
    ensure!(forged != victim && secret::parse(SecretKind::Api, &forged).is_ok());
    let forger = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let path = "/api/v2/tailnet/-/keys";
    let mut statuses = Vec::new();
    for _ in 0..(6 * BURST) {
        statuses.push(send_from(forger, s.port, path, &forged).await?.status);
    }
    ensure!(
        statuses.iter().all(|s| *s == 401 || *s == 429) && statuses.contains(&429),
        "the forger is refused, then limited: {statuses:?}"
    );
    let a = s.call("GET", path, Some(&victim), None).await?;
    ensure!(a.status == 200, "the victim is not limited: {a:?}");
    // And the forger's address stays limited whatever token it brings, the victim's included.
    let a = send_from(forger, s.port, path, &victim).await?;
    ensure!(a.status == 429, "the forger's address is limited: {a:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_11_responses_carrying_secrets_are_not_cached() -> anyhow::Result<()> {
    // The key create answer (`key`), the add-user answer (`apiKey`) and every other /api/v2
    // answer, refusals included, carry `Cache-Control: no-store`.
    let s = Stack::start().await?;
    let t = s.owner_token.clone();
    let no_store = |a: &Answer| {
        a.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "no-store")
    };
    let key = s
        .raw(
            "POST",
            "/api/v2/tailnet/-/keys",
            &[
                bearer(&t),
                ("content-type".to_owned(), "application/json".to_owned()),
            ],
            create_body(),
        )
        .await?;
    ensure!(key.status == 200 && key.body["key"].is_string(), "{key:?}");
    ensure!(no_store(&key), "key create: {:?}", key.headers);
    let user = s
        .call(
            "POST",
            "/api/v2/tailnet/-/users",
            Some(&t),
            Some(json!({ "loginName": "bob@example.com", "role": "admin" })),
        )
        .await?;
    ensure!(
        user.status == 200 && user.body["apiKey"].is_string(),
        "{user:?}"
    );
    ensure!(no_store(&user), "add user: {:?}", user.headers);
    for (method, path, token) in [
        ("GET", "/api/v2/tailnet/-/keys", Some(t.as_str())),
        ("GET", "/api/v2/tailnet/-/keys", None),
        ("GET", "/api/v2/no-such-route", Some(t.as_str())),
    ] {
        let a = s.call(method, path, token, None).await?;
        ensure!(no_store(&a), "{method} {path}: {a:?}");
    }
    Ok(())
}

/// Reads until the server closes the connection (or resets it); what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got).await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_12_slow_clients_are_disconnected_within_the_bounds() -> anyhow::Result<()> {
    // A client that sends part of a request's headers and then nothing is disconnected once
    // the header-read bound has passed; one that sends its headers and part of a promised body
    // is answered 408 and disconnected once the request bound has passed. Before the fix both
    // held their connections forever.
    const HEADER_READ_MS: u64 = 500;
    const REQUEST_MS: u64 = 1_500;
    // The bound on "disconnected within the bound", generous for a loaded machine.
    const SLACK_MS: u64 = 10_000;
    let s = Stack::start_with(|a| {
        a.header_read_ms_max = HEADER_READ_MS;
        a.request_ms_max = REQUEST_MS;
    })
    .await?;

    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await?;
    stream
        .write_all(b"GET /api/v2/tailnet/-/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await?;
    tokio::time::timeout(
        Duration::from_millis(HEADER_READ_MS + SLACK_MS),
        read_until_closed(&mut stream),
    )
    .await
    .context("a partial request's connection was not closed within the header-read bound")?;
    ensure!(
        started.elapsed() >= Duration::from_millis(HEADER_READ_MS),
        "closed before the bound: {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await?;
    let head = format!(
        "POST /api/v2/tailnet/-/keys HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"capabilities\"",
        s.owner_token
    );
    stream.write_all(head.as_bytes()).await?;
    let answer = tokio::time::timeout(
        Duration::from_millis(REQUEST_MS + SLACK_MS),
        read_until_closed(&mut stream),
    )
    .await
    .context("a slow body's connection was not closed within the request bound")?;
    let answer = String::from_utf8_lossy(&answer);
    ensure!(
        answer.starts_with("HTTP/1.1 408"),
        "a slow body is answered 408: {answer:?}"
    );
    ensure!(
        started.elapsed() >= Duration::from_millis(REQUEST_MS),
        "answered before the bound: {:?}",
        started.elapsed()
    );
    // The service still answers everyone else.
    let a = s
        .call("GET", "/api/v2/tailnet/-/keys", Some(&s.owner_token), None)
        .await?;
    ensure!(a.status == 200, "{a:?}");
    Ok(())
}
