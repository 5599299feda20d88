//! End-to-end harness: runs the real `anyu` binary in a temporary data
//! directory and talks to it over HTTP on a loopback port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The workspace root (manifests, fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command for the `anyu` binary under test, bound to `data_dir`.
pub fn anyu(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anyu"));
    cmd.arg("--data-dir").arg(data_dir);
    cmd.env_remove("ANYU_LISTEN")
        .env_remove("ANYU_CONFIG")
        .env("ANYU_LOG", "warn");
    cmd
}

/// Runs `anyu` to completion and returns its output, panicking with both
/// streams when the exit status differs from `expect_success`.
pub fn run(data_dir: &Path, args: &[&str], expect_success: bool) -> Output {
    let out = anyu(data_dir).args(args).output().expect("spawn anyu");
    if out.status.success() != expect_success {
        panic!(
            "anyu {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Initialises a data dir, generates `rows` sample persons and imports the
/// given sample datasets.
pub fn prepared_data_dir(rows: u64, datasets: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let samples = dir.path().join("samples");
    run(
        &data,
        &[
            "datasets",
            "generate",
            "--rows",
            &rows.to_string(),
            "--seed",
            "5",
            "--out",
            samples.to_str().unwrap(),
        ],
        true,
    );
    for id in datasets {
        let manifest = repo_root()
            .join("datasets/manifests")
            .join(format!("{id}.toml"));
        let csv = samples.join(format!("{id}.csv"));
        run(
            &data,
            &[
                "dataset",
                "import",
                manifest.to_str().unwrap(),
                csv.to_str().unwrap(),
            ],
            true,
        );
    }
    dir
}

/// A running `anyu serve`.
pub struct TestServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    client: reqwest::blocking::Client,
}

impl TestServer {
    /// Starts `anyu serve` on an ephemeral loopback port and waits until it listens.
    pub fn start(data_dir: &Path) -> TestServer {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> TestServer {
        let mut child = anyu(data_dir)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn anyu serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("Anyu listening on http://") {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().expect("address"),
            Err(_) => {
                let _ = child.kill();
                panic!("anyu serve did not report its address within 60 s");
            }
        };
        TestServer {
            child: Some(child),
            addr,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client.get(self.url(path)).send().expect("GET")
    }

    /// GET expecting `status`, returning the JSON body.
    pub fn get_json(&self, path: &str, status: u16) -> serde_json::Value {
        let resp = self.get(path);
        let got = resp.status().as_u16();
        let body = resp.text().expect("body");
        assert_eq!(got, status, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// Graceful stop: SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exit = wait_timeout(&mut child, Duration::from_secs(30));
        assert!(exit.success(), "anyu serve exited {exit:?} after SIGTERM");
    }

    /// Hard stop: SIGKILL, no chance to flush anything.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
