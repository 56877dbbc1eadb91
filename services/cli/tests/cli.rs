//! Black-box tests of the `authkeys` binary: bootstrap, the command service as a child process
//! (SIGTERM to stop), the registrar client, and a scan of every byte the run left behind for
//! secrets.

mod api_support;
mod proc_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use authkeys_domain::secret::{self, SecretKind};
use authkeys_protocol::{Device, KeyReply, Reply, TokenReply, UserReply, subject};
use authkeys_tests::NatsServer;
use proc_support::{Procs, authkeys, bootstrap_command};
use rustix::process::{Pid, Signal, kill_process};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Bound on the service's start and on its graceful stop.
const SERVICE_WAIT_MS_MAX: u64 = 30_000;

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context("run authkeys")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `id` of `(id X)` after `label` in bootstrap's stderr.
fn id_after(stderr: &str, label: &str) -> anyhow::Result<String> {
    let rest = &stderr[stderr.find(label).context("label")? + label.len()..];
    let start = rest.find("(id ").context("(id")? + 4;
    let end = rest[start..].find(')').context(")")? + start;
    Ok(rest[start..end].to_owned())
}

/// A bootstrapped data dir and the command service running on it as a child process.
struct Service {
    /// The service, killed on drop before the rest goes; empty once stopped.
    child: Procs,
    nats: NatsServer,
    data: tempfile::TempDir,
    log_file: PathBuf,
    client: async_nats::Client,
    tailnet: String,
    owner: String,
    owner_token: String,
}

impl Service {
    async fn start() -> anyhow::Result<Service> {
        let nats = NatsServer::start()?;
        let data = tempfile::tempdir()?;
        let out = run(&mut bootstrap_command(data.path(), "o@example.com"))?;
        ensure!(
            out.status.success(),
            "bootstrap failed: {}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        let token = stdout.strip_suffix('\n').context("one line")?.to_owned();
        ensure!(
            !token.contains('\n') && secret::parse(SecretKind::Api, &token).is_ok(),
            "stdout is not exactly one API token: {stdout:?}"
        );
        let tailnet = id_after(&stderr, "created tailnet")?;
        let owner = id_after(&stderr, "with Owner")?;

        let log_file = data.path().join("service.log");
        let log = fs::File::create(&log_file)?;
        let child = authkeys()
            .args(["command", "--nats", &nats.url()])
            .arg("--data")
            .arg(data.path())
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn authkeys command")?;
        let client = authkeys_tests::nats_client(&nats.url(), SERVICE_WAIT_MS_MAX).await?;
        Ok(Service {
            nats,
            data,
            log_file,
            child: Procs(vec![child]),
            client,
            tailnet,
            owner,
            owner_token: token,
        })
    }

    fn admin(&self, command_id: &str, fields: Value) -> Value {
        let mut body =
            json!({"commandId": command_id, "tailnet": self.tailnet, "actor": self.owner});
        if let (Some(b), Value::Object(f)) = (body.as_object_mut(), fields) {
            b.extend(f);
        }
        body
    }

    /// A request, retried while nobody answers yet (the service is starting); every command is
    /// idempotent, so retrying is safe.
    async fn call<T: DeserializeOwned>(&self, subj: &str, body: &Value) -> anyhow::Result<T> {
        let deadline = Instant::now() + Duration::from_millis(SERVICE_WAIT_MS_MAX);
        loop {
            match self
                .client
                .request(subj.to_owned(), serde_json::to_vec(body)?.into())
                .await
            {
                Ok(msg) => {
                    let reply: Reply<T> = serde_json::from_slice(&msg.payload)?;
                    return reply
                        .into_result()
                        .map_err(|e| anyhow::anyhow!("{subj} refused: {e:?}"));
                }
                Err(e)
                    if e.kind() == async_nats::RequestErrorKind::NoResponders
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e).context(format!("request on {subj}")),
            }
        }
    }

    async fn generate_key(&self, command_id: &str, reusable: bool) -> anyhow::Result<String> {
        let body = self.admin(
            command_id,
            json!({"capabilities": {"devices": {"create": {"reusable": reusable}}}}),
        );
        let reply: KeyReply = self.call(subject::GENERATE_KEY, &body).await?;
        reply.key.key.context("a new key carries its secret")
    }

    fn register(&self, key: &str, hostname: &str) -> anyhow::Result<Output> {
        run(authkeys()
            .args(["register", "--nats", &self.nats.url(), "--authkey", key])
            .args(["--hostname", hostname, "--os", "linux"]))
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.0.pop() else {
            return Ok(());
        };
        kill_process(Pid::from_child(&child), Signal::TERM).context("SIGTERM")?;
        let deadline = Instant::now() + Duration::from_millis(SERVICE_WAIT_MS_MAX);
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(status.success(), "service exited with {status}");
                return Ok(());
            }
            if Instant::now() >= deadline {
                child.kill().ok();
                child.wait().ok();
                bail!("service did not stop within {SERVICE_WAIT_MS_MAX} ms of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn service_log(&self) -> String {
        fs::read(&self.log_file)
            .map(|b| text(&b))
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bootstrap_then_register_through_the_service() -> anyhow::Result<()> {
    // The CLI end to end: bootstrap prints only the Owner's token (and refuses the same tailnet
    // again, non-zero, printing no token); a key generated over the admin subject registers a
    // node through `authkeys register`, which prints the device; a refusal (the one-off key used
    // again) exits non-zero with `error: invalid_key: …`; SIGTERM stops the service cleanly.
    let mut svc = Service::start().await?;
    let key = svc.generate_key("gen-1", false).await?;
    // The running service holds the log: bootstrap cannot write beside it.
    let again = run(&mut bootstrap_command(svc.data.path(), "x@example.com"))?;
    ensure!(again.status.code() == Some(1) && again.stdout.is_empty());
    let out = svc.register(&key, "web-1")?;
    ensure!(
        out.status.success(),
        "register failed: {}",
        text(&out.stderr)
    );
    let device: Device = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("stdout is not a device: {}", text(&out.stdout)))?;
    ensure!(device.hostname == "web-1" && device.user == "o@example.com" && device.os == "linux");

    let refused = svc.register(&key, "web-2")?;
    ensure!(refused.status.code() == Some(1), "{:?}", refused.status);
    ensure!(refused.stdout.is_empty());
    ensure!(
        text(&refused.stderr).trim_end()
            == "error: invalid_key: invalid, expired, revoked or used auth key",
        "stderr: {}",
        text(&refused.stderr)
    );
    svc.stop()?;

    // With the service stopped, a second bootstrap of the same name reaches the rule.
    let again = run(&mut bootstrap_command(svc.data.path(), "x@example.com"))?;
    ensure!(again.status.code() == Some(1) && again.stdout.is_empty());
    ensure!(
        text(&again.stderr).contains("tailnet example.com already exists"),
        "stderr: {}",
        text(&again.stderr)
    );
    Ok(())
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("list {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// The text of a secret and its parts: the whole text, the secret with its checksum, and the
/// secret alone.
fn needles(secret_text: &str) -> Vec<String> {
    let tail = &secret_text[secret_text.len() - secret::SECRET_LEN - secret::CHECK_LEN..];
    vec![
        secret_text.to_owned(),
        tail.to_owned(),
        tail[..secret::SECRET_LEN].to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_no_secret_is_stored_published_or_logged() -> anyhow::Result<()> {
    // R10 "only a keyed hash is ever stored, logged or published": a run that issues every kind
    // of secret (bootstrap token, auth keys incl. a retried generate, an added user's token, an
    // issued token), registers with them, fails registrations with wrong and re-cased secrets,
    // and shuts down. Then every byte of the data dir (log file, key files), the nats-server's
    // JetStream store and log, and the service's own debug-level log is searched for each
    // secret's text, its secret-and-checksum part and its bare secret part: none may appear.
    let mut svc = Service::start().await?;
    let mut secrets = vec![svc.owner_token.clone()];

    let one_off = svc.generate_key("gen-1", false).await?;
    let reusable = svc.generate_key("gen-2", true).await?;
    ensure!(
        svc.generate_key("gen-2", true).await? == reusable,
        "retry changed the secret"
    );
    secrets.extend([one_off.clone(), reusable.clone()]);
    let added: UserReply = svc
        .call(
            subject::ADD_USER,
            &svc.admin(
                "add-1",
                json!({"loginName": "a@example.com", "role": "admin"}),
            ),
        )
        .await?;
    let issued: TokenReply = svc
        .call(subject::ISSUE_TOKEN, &svc.admin("tok-1", json!({})))
        .await?;
    secrets.extend([
        added.api_key.context("a new user's token")?,
        issued.api_key.context("a new token")?,
    ]);

    for (key, host) in [(&one_off, "a"), (&reusable, "b"), (&reusable, "c")] {
        let out = svc.register(key, host)?;
        ensure!(out.status.success(), "{}", text(&out.stderr));
    }
    // Presented but wrong: these must not be logged either.
    let presented = secret::parse(SecretKind::Auth, &reusable).context("parses")?;
    let wrong = secret::issue(SecretKind::Auth, &presented.id, &[42; 32], &[0; 32]).text;
    let mut recased = reusable.clone().into_bytes();
    let i = recased.len() - 20;
    recased[i] = if recased[i].is_ascii_alphabetic() {
        recased[i] ^ 0x20
    } else {
        b'Z'
    };
    let recased = String::from_utf8(recased)?;
    for key in [&wrong, &recased, &one_off] {
        let out = svc.register(key, "d")?;
        ensure!(out.status.code() == Some(1), "{}", text(&out.stderr));
    }
    secrets.extend([wrong, recased]);
    svc.stop()?;

    let log = svc.service_log();
    ensure!(
        log.contains("DEBUG") && log.contains("command service stopped"),
        "the service log is not at debug level or incomplete:\n{log}"
    );
    let mut searched = files(svc.data.path())?;
    searched.extend(files(&svc.nats.store_dir())?);
    searched.push(svc.nats.log_path());
    ensure!(searched.iter().any(|p| p.ends_with("log.redb")));
    let mut bytes_searched = 0;
    for path in &searched {
        let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
        bytes_searched += bytes.len();
        for s in &secrets {
            for needle in needles(s) {
                ensure!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} holds a secret part ({} chars)",
                    path.display(),
                    needle.len()
                );
            }
        }
    }
    ensure!(
        bytes_searched > 10_000,
        "searched only {bytes_searched} bytes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r07_cli_create_key_acts_as_the_tokens_user() -> anyhow::Result<()> {
    // `authkeys admin create-key` on the service's host: the Owner's token (checked against the
    // log, read-only, while the service writes it) generates a key as the Owner, printed alone on
    // stdout, that registers a node; a wrong token is refused non-zero with nothing on stdout.
    let svc = Service::start().await?;
    // Wait until the service answers, so the key request does not race its start.
    svc.generate_key("warm-up", true).await?;
    let create = |token: &str| {
        run(authkeys()
            .args([
                "admin",
                "create-key",
                "--nats",
                &svc.nats.url(),
                "--token",
                token,
            ])
            .args([
                "--reusable",
                "--tag",
                "tag:ci",
                "--description",
                "ci runners",
            ])
            .arg("--data")
            .arg(svc.data.path()))
    };
    let out = create(&svc.owner_token)?;
    ensure!(
        out.status.success(),
        "create-key failed: {}",
        text(&out.stderr)
    );
    let key = text(&out.stdout).trim_end().to_owned();
    ensure!(
        secret::parse(SecretKind::Auth, &key).is_ok() && !key.contains('\n'),
        "stdout is not exactly one auth key: {key:?}"
    );
    ensure!(
        !text(&out.stderr).contains(&key),
        "the key is printed on stdout only"
    );
    for host in ["runner", "runner"] {
        let reg = svc.register(&key, host)?;
        ensure!(reg.status.success(), "register: {}", text(&reg.stderr));
        let device: Device = serde_json::from_slice(&reg.stdout)?;
        ensure!(device.tags == ["tag:ci"] && device.key_expiry_disabled);
    }

    let mut wrong = svc.owner_token.clone();
    wrong.pop();
    wrong.push(if svc.owner_token.ends_with('a') {
        'b'
    } else {
        'a'
    });
    for token in [wrong.as_str(), "tskey-api-nope", ""] {
        let out = create(token)?;
        ensure!(out.status.code() == Some(1), "{token:?}: {:?}", out.status);
        ensure!(out.stdout.is_empty());
        ensure!(
            text(&out.stderr).contains("invalid, expired or revoked API token"),
            "stderr: {}",
            text(&out.stderr)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_service_even_with_nats_gone() -> anyhow::Result<()> {
    // Shutdown is bounded: with nats-server killed, flushing replies and draining the
    // connection would wait for a reconnect forever; SIGTERM must still end the service cleanly
    // (its log closed with a final checkpoint) within the bound.
    let mut svc = Service::start().await?;
    svc.generate_key("before", true).await?;
    svc.nats.kill9()?;
    svc.stop()?;
    let reader = authkeys_log::LogReader::open(&svc.data.path().join("log.redb"))?;
    let report = reader.verify(None)?;
    ensure!(report.last_checkpoint.map(|s| s.get()) == Some(report.head.seq));
    Ok(())
}

/// Runs `cmd` with `input` on its stdin (closed after it).
fn run_with_stdin(cmd: &mut Command, input: &str) -> anyhow::Result<Output> {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run authkeys")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    child.wait_with_output().context("wait for authkeys")
}

/// The log's head seq, read-only while the service runs.
fn log_head(svc: &Service) -> anyhow::Result<u64> {
    let reader = authkeys_log::LogReader::open(&svc.data.path().join("log.redb"))?;
    Ok(reader.verify(None)?.head.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_11_secrets_are_read_from_files_or_stdin_not_the_command_line() -> anyhow::Result<()>
{
    // `--authkey` and `--token` show in the process list. `--authkey-file` / `--token-file`
    // read them from a file, or from stdin with `-`; each excludes its plain flag; bad input
    // (both, neither, a missing, empty or multi-line file) is refused with a clear error before
    // anything is sent, and the log is unchanged.
    let svc = Service::start().await?;
    let key = svc.generate_key("finding-11", true).await?;
    let files = tempfile::tempdir()?;
    let key_file = files.path().join("authkey");
    fs::write(&key_file, format!("{key}\n"))?;
    let token_file = files.path().join("token");
    fs::write(&token_file, format!("{}\n", svc.owner_token))?;
    let nats = svc.nats.url();
    let register = |host: &str| {
        let mut c = authkeys();
        c.args([
            "register",
            "--nats",
            &nats,
            "--hostname",
            host,
            "--os",
            "linux",
        ]);
        c
    };
    let create_key = || {
        let mut c = authkeys();
        c.args(["admin", "create-key", "--nats", &nats, "--reusable"])
            .arg("--data")
            .arg(svc.data.path());
        c
    };

    // Accepted: a file, and stdin.
    let out = run(register("from-file").arg("--authkey-file").arg(&key_file))?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let device: Device = serde_json::from_slice(&out.stdout)?;
    ensure!(device.hostname == "from-file");
    let out = run_with_stdin(
        register("from-stdin").args(["--authkey-file", "-"]),
        &format!("{key}\n"),
    )?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let device: Device = serde_json::from_slice(&out.stdout)?;
    ensure!(device.hostname == "from-stdin");
    for out in [
        run(create_key().arg("--token-file").arg(&token_file))?,
        run_with_stdin(create_key().args(["--token-file", "-"]), &svc.owner_token)?,
    ] {
        ensure!(out.status.success(), "{}", text(&out.stderr));
        let made = text(&out.stdout).trim_end().to_owned();
        ensure!(
            secret::parse(SecretKind::Auth, &made).is_ok(),
            "stdout is one auth key: {made:?}"
        );
    }

    // Refused, with a clear error, before anything is sent.
    let head = log_head(&svc)?;
    let empty = files.path().join("empty");
    fs::write(&empty, "\n")?;
    let two_lines = files.path().join("two-lines");
    fs::write(&two_lines, format!("{key}\n{key}\n"))?;
    let missing = files.path().join("missing");
    let refusals: Vec<(Output, &str)> = vec![
        (
            run(register("both")
                .args(["--authkey", &key, "--authkey-file"])
                .arg(&key_file))?,
            "cannot be used with",
        ),
        (run(&mut register("neither"))?, "--authkey"),
        (
            run(register("missing").arg("--authkey-file").arg(&missing))?,
            "--authkey-file: read",
        ),
        (
            run(register("empty").arg("--authkey-file").arg(&empty))?,
            "is empty",
        ),
        (
            run(register("two").arg("--authkey-file").arg(&two_lines))?,
            "must hold only the authkey",
        ),
        (
            run_with_stdin(register("stdin-empty").args(["--authkey-file", "-"]), "")?,
            "stdin is empty",
        ),
        (
            run(create_key()
                .args(["--token", &svc.owner_token, "--token-file"])
                .arg(&token_file))?,
            "cannot be used with",
        ),
        (run(&mut create_key())?, "--token"),
        (
            run(create_key().arg("--token-file").arg(&empty))?,
            "is empty",
        ),
    ];
    for (out, says) in &refusals {
        let stderr = text(&out.stderr);
        ensure!(
            out.status.code() == Some(2) && out.stdout.is_empty() && stderr.contains(says),
            "expected exit 2 saying {says:?}: {:?} {stderr}",
            out.status
        );
    }
    ensure!(log_head(&svc)? == head, "a refused input wrote nothing");
    Ok(())
}
