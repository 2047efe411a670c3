//! Headless Chromium through chromedriver, for the tests of the HTML pages: open a file, run a
//! script in it, read the console's errors, take a screenshot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver on a free local port with one browser session, both stopped on drop.
pub struct Browser {
    child: Child,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.session).call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(url: &str, body: serde_json::Value) -> serde_json::Value {
    let resp = ureq::post(url).send_json(body).unwrap_or_else(|e| panic!("{url}: {e}"));
    resp.into_json::<serde_json::Value>().unwrap()["value"].clone()
}

impl Browser {
    /// None (the test passes, saying so) where chromedriver is absent, unless
    /// BERTKIT_REQUIRE_CHROMIUM=1 (as in CI).
    pub fn start() -> Option<Browser> {
        let exe =
            ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].iter().map(PathBuf::from).find(|p| p.exists());
        let Some(exe) = exe else {
            if std::env::var("BERTKIT_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
                panic!("chromedriver not found (apt-get install chromium chromium-driver)");
            }
            eprintln!("SKIPPED: chromedriver not found (apt-get install chromium chromium-driver)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let session = post(
            &format!("{base}/session"),
            serde_json::json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--allow-file-access-from-files",
                    "--window-size=1400,1000", format!("--user-data-dir={}", profile.path().display())]}
            }}}),
        );
        let id = session["sessionId"].as_str().expect("a session").to_string();
        Some(Browser { child, session: format!("{base}/session/{id}"), _profile: profile })
    }

    /// Opens a local file and waits for it to load.
    pub fn open(&self, page: &Path) {
        post(&format!("{}/url", self.session), serde_json::json!({"url": format!("file://{}", page.display())}));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn run(&self, script: &str) -> serde_json::Value {
        post(&format!("{}/execute/sync", self.session), serde_json::json!({"script": script, "args": []}))
    }

    /// The console's errors since the last call.
    pub fn errors(&self) -> Vec<serde_json::Value> {
        let logs = post(&format!("{}/se/log", self.session), serde_json::json!({"type": "browser"}));
        logs.as_array().map(|a| a.iter().filter(|e| e["level"] == "SEVERE").cloned().collect()).unwrap_or_default()
    }

    /// The window as PNG bytes.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let shot = ureq::get(&format!("{}/screenshot", self.session))
            .call()
            .unwrap()
            .into_json::<serde_json::Value>()
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(shot["value"].as_str().unwrap()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        png
    }
}
