//! Requests per client address: a token bucket each, refilled at a steady
//! rate; an empty bucket answers 429 `rate_limited` with `Retry-After`
//! before any handler, audit event or body read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Buckets kept before full ones are dropped (a full bucket is the default).
const MAX_BUCKETS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The per-client token buckets. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl RateLimit {
    /// `per_second` requests on average, `burst` at once; `per_second = 0`
    /// turns the limit off.
    pub fn new(per_second: f64, burst: u32) -> RateLimit {
        RateLimit {
            per_second: per_second.max(0.0),
            burst: f64::from(burst.max(1)),
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes a token for `ip`, or says how long until one is there.
    fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&ip) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_second))
        }
    }
}

/// The middleware: callers without a known address (never the case behind
/// the accept loop) pass. A request let through runs with its address as
/// the client its anonymous audit events are counted under
/// (`enclave::domain::with_client`).
pub async fn limit(State(rate): State<RateLimit>, req: Request, next: Next) -> Response {
    let Some(ip) = super::connections::client_ip(req.extensions()) else {
        return next.run(req).await;
    };
    match rate.take(ip, Instant::now()) {
        Ok(()) => enclave::domain::with_client(ip.to_string(), next.run(req)).await,
        Err(wait) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this address; slow down",
        )
        .retry_after(wait.as_secs().max(1))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = RateLimit::new(2.0, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            rate.take(ip, t).unwrap();
        }
        let wait = rate.take(ip, t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        rate.take(ip, t + Duration::from_millis(500)).unwrap();
        // Another address has its own bucket.
        rate.take("192.0.2.2".parse().unwrap(), t).unwrap();
        // Off.
        let off = RateLimit::new(0.0, 1);
        for _ in 0..100 {
            off.take(ip, t).unwrap();
        }
    }
}
