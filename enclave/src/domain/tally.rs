//! Anonymous traffic as counters: a front end's anonymous reads and denials
//! (catalog reads, 401s, refused bearer tokens) are counted per client and
//! written as one `anonymous.summary` event per client and period, instead
//! of one fsync'd event each — anyone can send them, so one event each made
//! the log grow at the sender's pace. Security-relevant events of anonymous
//! callers (login attempts) stay one event each.
//!
//! The client is the front end's to name ([`with_client`], around a request);
//! without one (the host's command line, tests) every event is recorded.
//! Counts since the last summary are lost if the process is killed; a clean
//! stop writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Actor, Domain};
use crate::Result;
use crate::audit::Outcome;

/// Events counted instead of recorded when anonymous.
const TALLIED: [&str; 3] = ["catalog.read", "authz.denied", "auth.invalid_token"];

/// Token hash prefixes kept per client and period (the first ones seen).
const MAX_PREFIXES: usize = 20;

/// Clients kept per period before the rest are counted together.
const MAX_CLIENTS: usize = 10_000;

tokio::task_local! {
    static CLIENT: String;
}

/// Runs `f` (a request) with `client` (its network origin) as the client of
/// the anonymous events it causes.
pub async fn with_client<F: Future>(client: String, f: F) -> F::Output {
    CLIENT.scope(client, f).await
}

#[derive(Debug, Default)]
struct ClientCounts {
    counts: BTreeMap<String, u64>,
    token_prefixes: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    since: Mutex<Option<DateTime<Utc>>>,
    clients: Mutex<BTreeMap<String, ClientCounts>>,
}

/// What an event is counted as: its action, and the one detail that says
/// what kind of request it was.
fn label(action: &str, outcome: Outcome, details: &serde_json::Value) -> String {
    let detail = match action {
        "authz.denied" => details["action"].as_str(),
        "auth.invalid_token" => details["token_kind"].as_str(),
        _ => None,
    };
    let mut label = action.to_string();
    if let Some(d) = detail {
        label.push(':');
        label.push_str(d);
    }
    if outcome != Outcome::Success && action == "catalog.read" {
        label.push_str(":not_found");
    }
    label
}

impl Domain {
    /// Records an event, or counts it when it is an anonymous front-end
    /// caller's read or denial (see the module doc).
    pub(crate) async fn record_or_tally(
        &self,
        actor: &Actor,
        action: &str,
        object: impl Into<String>,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<()> {
        let client = CLIENT.try_with(Clone::clone).ok();
        let anonymous = actor.name == "anonymous" && actor.role == "anonymous";
        let Some(client) = client.filter(|_| anonymous && TALLIED.contains(&action)) else {
            self.record(actor, action, object, outcome, details).await?;
            return Ok(());
        };
        let now = self.now();
        self.tally
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(now);
        let mut clients = self.tally.clients.lock().unwrap_or_else(|e| e.into_inner());
        let key = if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            "other".to_string()
        } else {
            client
        };
        let c = clients.entry(key).or_default();
        *c.counts
            .entry(label(action, outcome, &details))
            .or_default() += 1;
        if let Some(prefix) = details["token_sha256_prefix"].as_str()
            && c.token_prefixes.len() < MAX_PREFIXES
        {
            c.token_prefixes.insert(prefix.to_string());
        }
        Ok(())
    }

    /// Writes the counts since the last summary, one `anonymous.summary`
    /// event per client; returns how many. Called periodically by a front end
    /// and at close.
    pub async fn flush_anonymous_tally(&self) -> Result<usize> {
        let clients =
            std::mem::take(&mut *self.tally.clients.lock().unwrap_or_else(|e| e.into_inner()));
        let since = self
            .tally
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (Some(since), false) = (since, clients.is_empty()) else {
            return Ok(0);
        };
        let until = self.now();
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        for (client, c) in &clients {
            self.record(
                &Actor::anonymous(),
                "anonymous.summary",
                format!("client:{client}"),
                Outcome::Success,
                serde_json::json!({
                    "since": ts(since),
                    "until": ts(until),
                    "counts": c.counts,
                    "token_sha256_prefixes": c.token_prefixes,
                }),
            )
            .await?;
        }
        Ok(clients.len())
    }
}
