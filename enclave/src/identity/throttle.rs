//! Login throttling before any password is hashed: attempt slots per
//! submitted username (whether or not it names an account, so unknown and
//! known names answer alike) and per client, with exponential backoff instead
//! of a hard lock; and a bound on concurrent Argon2 hashes.
//!
//! A slot is reserved before the hash and settled after it, under one mutex,
//! so concurrent wrong passwords cannot outrun the limit: with `free` attempts
//! allowed, at most `free` hashes are ever in flight or failed before the
//! backoff starts. The state lives in memory (one process holds the data
//! directory); a restart forgets it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Error;

/// Slots kept per map before idle ones are dropped; past it, new names wait.
const MAX_SLOTS: usize = 100_000;

/// Limits of the login throttle.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failed attempts per username before the backoff starts.
    pub account_free: u32,
    /// Failed attempts per client before its backoff starts.
    pub client_free: u32,
    /// The first backoff; each further failure doubles it.
    pub backoff_base: Duration,
    /// The longest backoff; failures older than four times this are forgotten.
    pub backoff_max: Duration,
    /// Password hashes computed at once.
    pub hash_concurrency: usize,
    /// Password checks that may wait for a hash; beyond, the answer is `busy`.
    pub hash_queue: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            account_free: 5,
            client_free: 20,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(15 * 60),
            hash_concurrency: 2,
            hash_queue: 16,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    failures: u32,
    in_flight: u32,
    last_failure: Option<DateTime<Utc>>,
}

impl Slot {
    /// How long until this slot admits an attempt (zero: now).
    fn wait(&self, free: u32, policy: &ThrottlePolicy, now: DateTime<Utc>) -> Duration {
        if self.failures + self.in_flight < free {
            return Duration::ZERO;
        }
        if self.in_flight > 0 {
            // Settle the attempts under way first.
            return Duration::from_secs(1);
        }
        let over = self.failures.saturating_sub(free).min(30);
        let backoff = policy
            .backoff_base
            .saturating_mul(1 << over)
            .min(policy.backoff_max);
        let since = self
            .last_failure
            .map_or(Duration::MAX, |t| (now - t).to_std().unwrap_or_default());
        backoff.saturating_sub(since)
    }

    /// Forgets failures old enough.
    fn age(&mut self, policy: &ThrottlePolicy, now: DateTime<Utc>) {
        let forget =
            TimeDelta::from_std(policy.backoff_max.saturating_mul(4)).unwrap_or(TimeDelta::MAX);
        if self.in_flight == 0 && self.last_failure.is_some_and(|t| now - t >= forget) {
            *self = Slot::default();
        }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.failures == 0
    }
}

#[derive(Debug, Default)]
struct Slots {
    accounts: HashMap<String, Slot>,
    clients: HashMap<String, Slot>,
}

fn make_room(
    map: &mut HashMap<String, Slot>,
    key: &str,
    policy: &ThrottlePolicy,
    now: DateTime<Utc>,
) -> bool {
    if map.len() < MAX_SLOTS || map.contains_key(key) {
        return true;
    }
    map.values_mut().for_each(|s| s.age(policy, now));
    map.retain(|_, s| !s.idle());
    map.len() < MAX_SLOTS
}

/// Why an attempt was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// Too many failed attempts for this username or from this client.
    Backoff { retry_after: Duration },
    /// Too many password checks under way on the platform.
    Busy,
}

impl Throttled {
    /// The caller-facing error.
    pub fn error(self) -> Error {
        match self {
            Throttled::Backoff { retry_after } => Error::TooManyAttempts {
                retry_after_secs: retry_after.as_secs().max(1),
            },
            Throttled::Busy => Error::Busy {
                retry_after_secs: 1,
            },
        }
    }
}

/// The throttle: attempt slots and the hash bound. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    policy: Arc<ThrottlePolicy>,
    slots: Arc<Mutex<Slots>>,
    /// Admission to a password check: hashes running plus those waiting.
    admitted: Arc<Semaphore>,
    hashing: Arc<Semaphore>,
}

impl LoginThrottle {
    pub fn new(policy: ThrottlePolicy) -> LoginThrottle {
        let run = policy.hash_concurrency.max(1);
        LoginThrottle {
            admitted: Arc::new(Semaphore::new(run + policy.hash_queue)),
            hashing: Arc::new(Semaphore::new(run)),
            policy: Arc::new(policy),
            slots: Arc::new(Mutex::new(Slots::default())),
        }
    }

    /// Reserves an attempt for `account` (the username as submitted) from
    /// `client`, or says how long to wait. The reservation counts as a failure
    /// unless `Attempt::succeeded` is called.
    pub fn reserve(
        &self,
        account: &str,
        client: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<Attempt, Throttled> {
        let p = &*self.policy;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let Slots { accounts, clients } = &mut *slots;
        if !make_room(accounts, account, p, now) || !make_room(clients, client, p, now) {
            return Err(Throttled::Backoff {
                retry_after: p.backoff_base,
            });
        }
        let a = accounts.entry(account.to_string()).or_default();
        a.age(p, now);
        let c = clients.entry(client.to_string()).or_default();
        c.age(p, now);
        let wait = a
            .wait(p.account_free, p, now)
            .max(c.wait(p.client_free, p, now));
        if !wait.is_zero() {
            return Err(Throttled::Backoff { retry_after: wait });
        }
        a.in_flight += 1;
        c.in_flight += 1;
        Ok(Attempt {
            throttle: self.clone(),
            account: account.to_string(),
            client: client.to_string(),
            now,
            settled: false,
        })
    }

    /// A permit to compute one password hash, waiting in a bounded queue;
    /// `Busy` when the queue is full.
    pub async fn hash_permit(&self) -> std::result::Result<HashPermit, Throttled> {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| Throttled::Busy)?;
        let running = Arc::clone(&self.hashing)
            .acquire_owned()
            .await
            .map_err(|_| Throttled::Busy)?;
        Ok(HashPermit {
            _admitted: admitted,
            _running: running,
        })
    }

    fn settle(&self, account: &str, client: &str, success: bool, now: DateTime<Utc>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = slots.accounts.get_mut(account) {
            a.in_flight = a.in_flight.saturating_sub(1);
            if success {
                a.failures = 0;
            } else {
                a.failures = a.failures.saturating_add(1);
                a.last_failure = Some(now);
            }
            if a.idle() {
                slots.accounts.remove(account);
            }
        }
        if let Some(c) = slots.clients.get_mut(client) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if !success {
                c.failures = c.failures.saturating_add(1);
                c.last_failure = Some(now);
            }
            if c.idle() {
                slots.clients.remove(client);
            }
        }
    }
}

/// A reserved attempt. Dropped unsettled (a cancelled request), it counts as
/// a failure.
#[derive(Debug)]
pub struct Attempt {
    throttle: LoginThrottle,
    account: String,
    client: String,
    now: DateTime<Utc>,
    settled: bool,
}

impl Attempt {
    /// Nothing was checked (the platform was busy): neither a failure nor a success.
    pub fn abandoned(mut self) {
        self.settled = true;
        let mut slots = self
            .throttle
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Slots { accounts, clients } = &mut *slots;
        for (map, key) in [(accounts, &self.account), (clients, &self.client)] {
            if let Some(s) = map.get_mut(key.as_str()) {
                s.in_flight = s.in_flight.saturating_sub(1);
                if s.idle() {
                    map.remove(key.as_str());
                }
            }
        }
    }

    /// The password was right: the username's failures are cleared.
    pub fn succeeded(mut self) {
        self.settled = true;
        self.throttle
            .settle(&self.account, &self.client, true, self.now);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle
                .settle(&self.account, &self.client, false, self.now);
        }
    }
}

/// Held while one password hash is computed.
#[derive(Debug)]
pub struct HashPermit {
    _admitted: OwnedSemaphorePermit,
    _running: OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottlePolicy {
            account_free: 3,
            client_free: 10,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            hash_concurrency: 1,
            hash_queue: 0,
        })
    }

    #[test]
    fn reservations_in_flight_count_against_the_limit() {
        let th = throttle();
        let held: Vec<_> = (0..3)
            .map(|_| th.reserve("bob", "c", t(0)).unwrap())
            .collect();
        assert!(th.reserve("bob", "c", t(0)).is_err());
        // Another name from the same client is still admitted.
        assert!(th.reserve("eve", "c", t(0)).is_ok());
        drop(held);
    }

    #[test]
    fn backoff_doubles_and_a_success_clears_it() {
        let th = throttle();
        for _ in 0..3 {
            drop(th.reserve("bob", "c", t(0)).unwrap());
        }
        assert_eq!(
            th.reserve("bob", "c", t(5)).unwrap_err(),
            Throttled::Backoff {
                retry_after: Duration::from_secs(5)
            }
        );
        drop(th.reserve("bob", "c", t(10)).unwrap());
        assert_eq!(
            th.reserve("bob", "c", t(25)).unwrap_err(),
            Throttled::Backoff {
                retry_after: Duration::from_secs(5)
            }
        );
        th.reserve("bob", "c", t(30)).unwrap().succeeded();
        for _ in 0..3 {
            drop(th.reserve("bob", "c", t(31)).unwrap());
        }
    }

    #[test]
    fn the_backoff_is_capped_and_old_failures_forgotten() {
        let th = throttle();
        // One failure a minute and a bit: never inside the longest backoff.
        for i in 0..12 {
            drop(th.reserve("bob", "c", t(i * 61)).unwrap());
        }
        assert_eq!(
            th.reserve("bob", "c", t(11 * 61 + 1)).unwrap_err(),
            Throttled::Backoff {
                retry_after: Duration::from_secs(59)
            }
        );
        // Four longest backoffs later the failures are forgotten.
        for _ in 0..3 {
            drop(th.reserve("bob", "c", t(11 * 61 + 240)).unwrap());
        }
    }

    #[tokio::test]
    async fn hashes_are_bounded() {
        let th = throttle();
        let first = th.hash_permit().await.unwrap();
        assert_eq!(th.hash_permit().await.unwrap_err(), Throttled::Busy);
        drop(first);
        assert!(th.hash_permit().await.is_ok());
    }
}
