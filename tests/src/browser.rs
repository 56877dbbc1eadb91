//! A real headless Chromium for the admin console's tests, driven over WebDriver (W3C) through
//! Debian's `chromedriver`.
//!
//! [`Browser::start`] spawns `chromedriver` on a free loopback port (killed on drop), opens a
//! session with a fresh profile directory and the flags a closed network needs (without
//! `--disable-background-networking` and friends Chromium stalls on start trying to reach
//! Google), and offers the few commands the tests use: go to a URL, find elements by CSS
//! selector (waiting, bounded), click, type, read text, run a script, resize, screenshot.
//!
//! Why not a WebDriver crate: `fantoccini`'s rustls feature brings `aws-lc-rs` into the
//! workspace (a C build, and a second rustls crypto provider beside `ring` that makes rustls'
//! default provider ambiguous for every crate that links it); the protocol is a dozen JSON
//! requests, sent here with the `reqwest` the gateway already builds (ADR 004).
//!
//! Binaries: `CHROMEDRIVER` (else `/usr/bin/chromedriver`) and `CHROMIUM` (else
//! `/usr/bin/chromium`); `make tools` installs Debian's `chromium` and `chromium-driver`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};

/// Longest wait for chromedriver to answer `/status`, and for a session to open.
const START_WAIT_MS_MAX: u64 = 30_000;
/// Longest wait of [`Browser::find`] and [`Browser::wait_for`].
pub const FIND_WAIT_MS_MAX: u64 = 30_000;
/// Longest any one WebDriver command may take.
const COMMAND_WAIT_MS_MAX: u64 = 30_000;
/// Poll interval of every wait here.
const POLL_MS: u64 = 50;
/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; chromedriver (and with it the browser) is killed on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    _profile: tempfile::TempDir,
}

/// An element found on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// Whether the browser and its driver are installed (`make tools` installs both).
pub fn available() -> bool {
    binary("CHROMEDRIVER", "/usr/bin/chromedriver").exists()
        && binary("CHROMIUM", "/usr/bin/chromium").exists()
}

impl Browser {
    /// Spawns chromedriver and opens a headless session, `width`×`height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        let driver_bin = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        ensure!(
            driver_bin.exists() && chromium.exists(),
            "{} or {} is missing: run `make tools` (apt-get install chromium chromium-driver)",
            driver_bin.display(),
            chromium.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", driver_bin.display()))?;
        let profile = tempfile::tempdir().context("browser profile dir")?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(COMMAND_WAIT_MS_MAX))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            http,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_millis(START_WAIT_MS_MAX);
        loop {
            let ready = browser
                .http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            ensure!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let opened = browser
            .http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .context("open a WebDriver session")?;
        let v: Value = opened.json().await?;
        let id = v["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session: {v}"))?;
        browser.session = format!("{base}/session/{id}");
        browser.resize(width, height).await?;
        Ok(browser)
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        let answer = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = answer.status();
        let v: Value = answer
            .json()
            .await
            .with_context(|| format!("{method} {path}"))?;
        if !status.is_success() {
            bail!("{method} {path}: {status} {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.command(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.command(reqwest::Method::GET, path, Value::Null).await
    }

    /// Navigates to `url` and waits for the document to load.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    /// The current URL.
    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self
            .get("/url")
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Sets the window (and, headless, the viewport) to `width`×`height`.
    pub async fn resize(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await
            .map(drop)
    }

    /// Every element matching `css` now (maybe none).
    pub async fn find_all(&self, css: &str) -> anyhow::Result<Vec<Element>> {
        let v = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The first element matching `css` that is displayed, waiting for one at most
    /// [`FIND_WAIT_MS_MAX`].
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        let deadline = Instant::now() + Duration::from_millis(FIND_WAIT_MS_MAX);
        loop {
            for e in self.find_all(css).await? {
                if self.displayed(&e).await.unwrap_or(false) {
                    return Ok(e);
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "no displayed element matches {css:?} within {FIND_WAIT_MS_MAX} ms (page: {})",
                    self.url().await.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Waits (at most `wait_ms`) until `script` (a function body returning a value) returns
    /// something truthy; returns it.
    pub async fn wait_for(&self, what: &str, script: &str, wait_ms: u64) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        loop {
            let v = self.execute(script, json!([])).await?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(_) => true,
            };
            if truthy {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                bail!("{what}: not true within {wait_ms} ms");
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Whether `e` is displayed.
    pub async fn displayed(&self, e: &Element) -> anyhow::Result<bool> {
        Ok(self
            .get(&format!("/element/{}/displayed", e.0))
            .await?
            .as_bool()
            .unwrap_or(false))
    }

    /// Clicks the first displayed element matching `css`. A page that re-renders (a live
    /// update) may replace the element between finding and clicking it: then it is found again.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_millis(FIND_WAIT_MS_MAX);
        loop {
            let e = self.find(css).await?;
            match self
                .post(&format!("/element/{}/click", e.0), json!({}))
                .await
            {
                Ok(_) => return Ok(()),
                Err(err) if stale(&err) && Instant::now() < deadline => continue,
                Err(err) => return Err(err.context(format!("click {css}"))),
            }
        }
    }

    /// Clears the first displayed field matching `css` and types `text` into it (WebDriver key
    /// codes allowed, e.g. `"\u{E007}"` for Enter).
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_millis(FIND_WAIT_MS_MAX);
        loop {
            let e = self.find(css).await?;
            self.post(&format!("/element/{}/clear", e.0), json!({}))
                .await
                .ok();
            let typed = self
                .post(&format!("/element/{}/value", e.0), json!({ "text": text }))
                .await;
            match typed {
                Ok(_) => return Ok(()),
                Err(err) if stale(&err) && Instant::now() < deadline => continue,
                Err(err) => return Err(err.context(format!("type into {css}"))),
            }
        }
    }

    /// Types `text` into whatever has the focus (the keyboard, as a user has it).
    pub async fn keys(&self, text: &str) -> anyhow::Result<()> {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await
        .map(drop)
    }

    /// The visible text of the first displayed element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_millis(FIND_WAIT_MS_MAX);
        loop {
            let e = self.find(css).await?;
            match self.get(&format!("/element/{}/text", e.0)).await {
                Ok(v) => return Ok(v.as_str().unwrap_or_default().to_owned()),
                Err(err) if stale(&err) && Instant::now() < deadline => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub async fn execute(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs `script` with a callback as its last argument; what it passes to the callback.
    pub async fn execute_async(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs a Chrome DevTools Protocol command (chromedriver's `goog/cdp/execute`), e.g.
    /// `Network.emulateNetworkConditions` to take the page offline.
    pub async fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        self.post("/goog/cdp/execute", json!({ "cmd": cmd, "params": params }))
            .await
    }

    /// Saves a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let b64 = self.get("/screenshot").await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().context("screenshot")?)
            .context("decode the screenshot")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// Closes the session (the browser exits), then chromedriver.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let url = std::mem::take(&mut self.session);
        self.http.delete(url).send().await.ok();
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed did not `close`: end the session first, so that chromedriver
        // takes the browser down with it, then kill chromedriver.
        if let Some(rest) = self.session.strip_prefix("http://") {
            delete_blocking(rest);
        }
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}

/// Whether a command failed because its element left the page (it was re-rendered).
fn stale(err: &anyhow::Error) -> bool {
    format!("{err:#}").contains("stale element reference")
}

/// `DELETE http://<host:port/path>` over a plain socket, bounded, its answer ignored (for drop).
fn delete_blocking(host_and_path: &str) {
    use std::io::{Read as _, Write as _};
    let Some((host, path)) = host_and_path.split_once('/') else {
        return;
    };
    let Ok(addr) = host.parse::<std::net::SocketAddr>() else {
        return;
    };
    let wait = Duration::from_millis(START_WAIT_MS_MAX);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, wait) else {
        return;
    };
    stream.set_read_timeout(Some(wait)).ok();
    let request = format!(
        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut sink = Vec::new();
        stream.read_to_end(&mut sink).ok();
    }
}
