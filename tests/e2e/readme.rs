//! README.md's walk-through as written: `anyu demo` serving, the export lines
//! and review loop it prints, then the "Walk through the demo" shell block,
//! run by bash with this `anyu` on the PATH. A route, an answer's shape or a
//! demo default the README relies on breaks here first.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{anyu, repo_root, run, stdout};

/// The first ```sh block under README's "### Walk through the demo".
fn readme_walk_through() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("### Walk through the demo")
        .nth(1)
        .expect("README has the walk-through section");
    let block = section.split("```sh\n").nth(1).expect("a sh block");
    block.split("\n```").next().unwrap().to_string()
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    // The walk-through runs from the repository root (it uploads a prebuilt model).
    std::os::unix::fs::symlink(repo_root().join("sandbox"), work.join("sandbox")).unwrap();

    let mut demo = anyu(&data)
        .args(["demo", "--rows", "2000", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = demo.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(300))
            .expect("the demo prints its walk-through lines");
        let done = line.starts_with("Stop with Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    // What the demo asks to paste: the indented lines after its walk-through header.
    let start = printed
        .iter()
        .position(|l| l.starts_with("Walk through the demo"))
        .expect("walk-through header");
    let paste: Vec<&str> = printed[start..]
        .iter()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("  "))
        .collect();
    assert!(
        paste.iter().any(|l| l.starts_with("export APP2=")),
        "{printed:#?}"
    );
    assert!(
        paste.iter().any(|l| l.starts_with("for APP in")),
        "{printed:#?}"
    );

    // Beside the README: the same model on the `invisible` grant is refused,
    // and the message names the usage method.
    let script = format!(
        "set -euo pipefail\n{}\n{}\n\
         curl -s -X POST $BASE/api/jobs -H \"authorization: Bearer $R\" -H 'content-type: application/json' \
         -d \"{{\\\"grant_id\\\":\\\"$G1\\\",\\\"model\\\":\\\"$SHA\\\",\\\"params\\\":\\\"\\\",\\\"sql\\\":\\\"SELECT contribution_base, months_contributed FROM social_insurance\\\"}}\" \
         | jq -r '.error.code + \": \" + .error.message'\n",
        paste.join("\n"),
        readme_walk_through()
    );
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_anyu"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let walked = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("PATH", path)
        .env("ANYU_LOG", "warn")
        .env_remove("ANYU_PUBLIC_KEY")
        .output()
        .unwrap();
    let said = stdout(&walked);
    assert!(
        walked.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&walked.stderr)
    );
    // Both grants opened, both results waited for review and were released,
    // the researcher's copy verified with the published key alone.
    assert_eq!(said.matches("\"approved\"").count(), 2, "{said}");
    assert_eq!(said.matches("\"active\"").count(), 2, "{said}");
    assert!(said.matches("\"pending_review\"").count() >= 2, "{said}");
    assert_eq!(said.matches("\"released\"").count(), 2, "{said}");
    assert!(said.contains("release OK: release "), "{said}");
    assert!(said.contains("term,estimate"), "{said}");
    assert!(
        said.contains("row_level_output: this grant's usage method is `invisible`"),
        "{said}"
    );
    assert!(
        std::fs::read_to_string(work.join("result.csv"))
            .unwrap()
            .starts_with("district,sex,n,mean"),
    );

    Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while demo.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "demo did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    run(&data, &["audit", "verify"], true);
}
