//! Platform configuration: a TOML file, overridden by environment variables and
//! flags (clap's `env` on each flag), in that order of increasing precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use enclave::access::{ApplicationLimits, Budgets};
use enclave::audit::AuditOptions;
use enclave::calendar::WorkCalendar;
use enclave::catalog::GradeScale;
use enclave::domain::{AccessOptions, JobOptions};
use enclave::identity::{IdentityPolicy, ThrottlePolicy};
use enclave::{DomainOptions, NotOpenListing};
use serde::Deserialize;

/// The name `anyu init` gives the configuration file inside the data directory.
pub const CONFIG_FILE: &str = "anyu.toml";

/// Default listen address: loopback only; exposing the domain is a deliberate act.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub server: ServerConfig,
    pub catalog: CatalogConfig,
    pub audit: AuditConfig,
    pub identity: IdentityConfig,
    pub calendar: CalendarConfig,
    pub access: AccessConfig,
    pub jobs: JobsConfig,
    pub models: ModelsConfig,
    pub grades: GradeScale,
}

/// Limits of researchers' WebAssembly models. Time and memory of a run are
/// the job's (`[jobs]`): a model shares its job's deadline and memory pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Largest component accepted at intake.
    pub max_component_mib: usize,
    /// Largest linear memory of one model.
    pub max_memory_mib: usize,
    /// Largest result table, in cells.
    pub max_output_cells: u64,
    /// Largest job log a model may write.
    pub max_log_kib: usize,
    /// Rows per input batch handed to a model.
    pub batch_rows: usize,
    /// Longest params string.
    pub max_params_bytes: usize,
    /// Time allowed to a model upload, which compiles the component.
    pub intake_timeout_secs: u64,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        let m = enclave::domain::ModelOptions::default();
        ModelsConfig {
            max_component_mib: m.max_component_bytes >> 20,
            max_memory_mib: m.max_memory_bytes >> 20,
            max_output_cells: m.max_output_cells,
            max_log_kib: m.max_log_bytes >> 10,
            batch_rows: m.batch_rows,
            max_params_bytes: m.max_params_bytes,
            intake_timeout_secs: 600,
        }
    }
}

impl ModelsConfig {
    pub fn options(&self) -> enclave::domain::ModelOptions {
        enclave::domain::ModelOptions {
            max_component_bytes: self.max_component_mib.clamp(1, 1024) << 20,
            max_memory_bytes: self.max_memory_mib.clamp(16, 64 << 10) << 20,
            max_output_cells: self.max_output_cells.max(1),
            max_log_bytes: self.max_log_kib.clamp(1, 64 << 10) << 10,
            batch_rows: self.batch_rows.clamp(1, 1 << 20),
            max_params_bytes: self.max_params_bytes.clamp(1, 1 << 20),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs running at once.
    pub workers: usize,
    /// Queued or running jobs per researcher.
    pub per_user: usize,
    /// Memory per job before operators spill to disk or fail.
    pub memory_mib: usize,
    /// Wall-clock limit per job.
    pub deadline_secs: u64,
    /// Parallelism inside one job (0: number of cores).
    pub target_partitions: usize,
    /// Sets of constants of one plan shape under one grant from which its
    /// jobs are flagged for review (oracle campaigns).
    pub campaign_flag_at: u64,
    /// From how many a suspension request goes to the audit log.
    pub campaign_suspend_at: u64,
    /// Differencing sketches only when a comparison needs them (false:
    /// every job computes them).
    pub lazy_sketches: bool,
}

impl Default for JobsConfig {
    fn default() -> Self {
        let j = JobOptions::default();
        JobsConfig {
            workers: j.workers,
            per_user: j.per_user,
            memory_mib: j.memory_bytes >> 20,
            deadline_secs: j.deadline.as_secs(),
            target_partitions: 0,
            campaign_flag_at: j.campaign_flag_at,
            campaign_suspend_at: j.campaign_suspend_at,
            lazy_sketches: j.lazy_sketches,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Working days for the completeness check of an application (XM:23).
    pub completeness_working_days: u32,
    /// Working days for the joint review (SZ:42).
    pub review_working_days: u32,
    /// Longest period of use an application may ask for.
    pub max_period_days: i64,
    /// Largest uploaded material.
    pub max_material_bytes: u64,
    /// Most materials per application.
    pub max_materials: usize,
    /// Budgets of a new grant before reviewers' caps and the datasets' DP budgets.
    pub default_budgets: Budgets,
}

impl Default for AccessConfig {
    fn default() -> Self {
        let a = AccessOptions::default();
        AccessConfig {
            completeness_working_days: a.completeness_working_days,
            review_working_days: a.review_working_days,
            max_period_days: a.limits.max_period_days,
            max_material_bytes: a.max_material_bytes,
            max_materials: a.max_materials,
            default_budgets: a.default_budgets,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// Calendar files (official holiday notices) merged over the built-in
    /// mainland-China calendar, later files winning per year.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Sessions expire this long after login.
    pub session_ttl_minutes: u64,
    /// Failed logins per username (known or not) before each further attempt
    /// waits a backoff, doubling from `backoff_base_secs` ...
    pub max_failed_logins: u32,
    /// ... up to this long.
    pub lockout_minutes: u64,
    pub backoff_base_secs: u64,
    /// Failed logins from one client address before its backoff starts.
    pub client_max_failed_logins: u32,
    /// Password hashes computed at once (each takes a core for tens of ms) ...
    pub password_hash_concurrency: usize,
    /// ... and checks that may wait for one; beyond, logins answer 503.
    pub password_hash_queue: usize,
    pub min_password_len: usize,
    /// Lifetime of an API token created without an expiry.
    pub api_token_ttl_days: u64,
    /// Longest lifetime an API token may be given.
    pub api_token_max_ttl_days: u64,
    /// How long a one-time code (a new account's, a reset's) stays usable.
    pub one_time_code_hours: u64,
    /// Creating stewards and admins, and resetting their passwords, needs a
    /// second admin's approval.
    pub second_admin: bool,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        let p = IdentityPolicy::default();
        IdentityConfig {
            session_ttl_minutes: p.session_ttl.as_secs() / 60,
            max_failed_logins: p.throttle.account_free,
            lockout_minutes: p.throttle.backoff_max.as_secs() / 60,
            backoff_base_secs: p.throttle.backoff_base.as_secs(),
            client_max_failed_logins: p.throttle.client_free,
            password_hash_concurrency: p.throttle.hash_concurrency,
            password_hash_queue: p.throttle.hash_queue,
            min_password_len: p.min_password_len,
            api_token_ttl_days: p.api_token_ttl.as_secs() / 86_400,
            api_token_max_ttl_days: p.api_token_max_ttl.as_secs() / 86_400,
            one_time_code_hours: p.one_time_code_ttl.as_secs() / 3600,
            second_admin: enclave::domain::AccountOptions::default().second_admin,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Requests running longer are answered 408.
    pub request_timeout_secs: u64,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Time allowed to send a request head; a slower client is cut.
    pub header_read_timeout_secs: u64,
    /// Open connections, all clients together; more are answered 503 and closed.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_client: usize,
    /// Requests per second from one client address, on average (0: no limit) ...
    pub rate_per_second: f64,
    /// ... and at once; beyond, 429 with Retry-After.
    pub rate_burst: u32,
    /// Fill level of the data directory's file system that raises an alarm
    /// (an audit event and a log warning; 0: never).
    pub disk_alarm_percent: u8,
    /// TLS termination in the server (`[server.tls]`); plain HTTP without it.
    pub tls: Option<TlsConfig>,
    /// Console cookies are marked `Secure` (also set when TLS is on, or
    /// behind a TLS-terminating proxy that does not send
    /// `X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
}

/// `[server.tls]`: the certificate chain and its private key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: std::path::PathBuf,
    /// The private key of the leaf (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: std::path::PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// `hidden` (default) or `name_only`.
    pub not_open: NotOpenListing,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A signed checkpoint every this many events (and at shutdown).
    pub checkpoint_every: u64,
    /// A directory the operator does not control alone (an auditor's mount),
    /// where every signed head record is copied; `anyu audit verify` checks
    /// the log against it.
    pub witness_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            server: ServerConfig::default(),
            catalog: CatalogConfig::default(),
            audit: AuditConfig::default(),
            identity: IdentityConfig::default(),
            calendar: CalendarConfig::default(),
            access: AccessConfig::default(),
            jobs: JobsConfig::default(),
            models: ModelsConfig::default(),
            grades: GradeScale::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            request_timeout_secs: 30,
            body_limit_bytes: 1024 * 1024,
            header_read_timeout_secs: 10,
            max_connections: 512,
            max_connections_per_client: 64,
            rate_per_second: 100.0,
            rate_burst: 1000,
            disk_alarm_percent: 90,
            tls: None,
            secure_cookies: false,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every: AuditOptions::default().checkpoint_every,
            witness_dir: None,
        }
    }
}

impl Config {
    /// Loads `explicit` if given (it must exist), else `DATA_DIR/anyu.toml` if
    /// present, else the defaults.
    pub fn load(explicit: Option<&Path>, data_dir: &Path) -> Result<Config, String> {
        let path: Option<PathBuf> = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(data_dir.join(CONFIG_FILE)).filter(|p| p.exists()),
        };
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read configuration {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("configuration {}: {e}", path.display()))
    }

    pub fn domain_options(&self) -> Result<DomainOptions, String> {
        let mut calendar = WorkCalendar::china_mainland();
        for file in &self.calendar.files {
            let extra = WorkCalendar::from_path(file)
                .map_err(|e| format!("calendar {}: {e}", file.display()))?;
            calendar = calendar.merge(extra);
        }
        self.access
            .default_budgets
            .validate("access.default_budgets")
            .map_err(|e| e.to_string())?;
        Ok(DomainOptions {
            calendar,
            access: AccessOptions {
                completeness_working_days: self.access.completeness_working_days,
                review_working_days: self.access.review_working_days,
                limits: ApplicationLimits {
                    max_period_days: self.access.max_period_days.max(1),
                },
                default_budgets: self.access.default_budgets,
                max_material_bytes: self.access.max_material_bytes,
                max_materials: self.access.max_materials,
            },
            clock: enclave::domain::Clock::system(),
            models: self.models.options(),
            jobs: JobOptions {
                workers: self.jobs.workers.max(1),
                per_user: self.jobs.per_user.max(1),
                memory_bytes: self.jobs.memory_mib.max(16) << 20,
                deadline: Duration::from_secs(self.jobs.deadline_secs.max(1)),
                target_partitions: match self.jobs.target_partitions {
                    0 => JobOptions::default().target_partitions,
                    n => n,
                },
                campaign_flag_at: self.jobs.campaign_flag_at.max(2),
                campaign_suspend_at: self.jobs.campaign_suspend_at.max(2),
                lazy_sketches: self.jobs.lazy_sketches,
                ..JobOptions::default()
            },
            grades: self.grades.clone(),
            audit: AuditOptions {
                checkpoint_every: self.audit.checkpoint_every,
                witness_dir: self.audit.witness_dir.clone(),
                ..AuditOptions::default()
            },
            not_open: self.catalog.not_open,
            identity: IdentityPolicy {
                session_ttl: Duration::from_secs(self.identity.session_ttl_minutes.max(1) * 60),
                throttle: ThrottlePolicy {
                    account_free: self.identity.max_failed_logins.max(1),
                    client_free: self.identity.client_max_failed_logins.max(1),
                    backoff_base: Duration::from_secs(self.identity.backoff_base_secs.max(1)),
                    backoff_max: Duration::from_secs(self.identity.lockout_minutes.max(1) * 60),
                    hash_concurrency: self.identity.password_hash_concurrency.max(1),
                    hash_queue: self.identity.password_hash_queue,
                },
                min_password_len: self.identity.min_password_len.max(8),
                api_token_ttl: days(self.identity.api_token_ttl_days.max(1)),
                api_token_max_ttl: days(
                    self.identity
                        .api_token_max_ttl_days
                        .max(self.identity.api_token_ttl_days)
                        .max(1),
                ),
                one_time_code_ttl: Duration::from_secs(
                    self.identity.one_time_code_hours.max(1) * 3600,
                ),
                ..IdentityPolicy::default()
            },
            accounts: enclave::domain::AccountOptions {
                second_admin: self.identity.second_admin,
            },
        })
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_secs.max(1))
    }

    pub fn connection_limits(&self) -> crate::server::connections::ConnectionLimits {
        crate::server::connections::ConnectionLimits {
            header_read_timeout: Duration::from_secs(self.server.header_read_timeout_secs.max(1)),
            max_connections: self.server.max_connections.max(1),
            max_per_client: self.server.max_connections_per_client.max(1),
            drain: self.request_timeout().max(self.intake_timeout()),
        }
    }

    pub fn intake_timeout(&self) -> Duration {
        Duration::from_secs(self.models.intake_timeout_secs.max(1))
    }
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(86_400))
}

/// The commented file `anyu init` writes; every key shows its default.
pub const DEFAULT_CONFIG_TOML: &str = r#"# Anyu platform configuration. Every key is optional; shown values are the defaults.
# Flags and ANYU_* environment variables override this file.

# listen = "127.0.0.1:8080"          # ANYU_LISTEN / --listen

[server]
# request_timeout_secs = 30
# body_limit_bytes = 1048576
# header_read_timeout_secs = 10        # a client slower to send a request head is cut
# max_connections = 512                # open connections in all; more get 503 and are closed
# max_connections_per_client = 64      # open connections from one address (a proxy is one address)
# rate_per_second = 100.0              # requests from one address, on average (0: no limit) ...
# rate_burst = 1000                    # ... and at once; beyond, 429 with Retry-After
# disk_alarm_percent = 90              # data directory's file system this full: audit event + warning
# secure_cookies = false               # console cookies always `Secure` (set behind a TLS proxy)

# TLS in the server itself, for deployments without a reverse proxy (HSTS is sent then):
# [server.tls]
# cert_file = "/etc/anyu/tls/fullchain.pem"   # PEM, leaf first
# key_file = "/etc/anyu/tls/privkey.pem"      # PEM (PKCS#8, PKCS#1 or SEC1), mode 0600

[catalog]
# How not-open datasets appear in the public catalog: "hidden" or "name_only".
# not_open = "hidden"

[audit]
# checkpoint_every = 1000            # signed checkpoint every N events, and at shutdown
# witness_dir = "/mnt/auditor/anyu"  # a copy of every signed head, where the operator alone cannot
#                                    # rewrite it; `anyu audit verify` checks the log against it

[calendar]
# Official holiday notices (calendar TOML files) merged over the built-in 2026/2027 data.
# files = ["/etc/anyu/china_2027.toml"]

[access]
# completeness_working_days = 3        # XM:23
# review_working_days = 10             # SZ:42
# max_period_days = 1098
# max_material_bytes = 10485760
# max_materials = 20
# Budgets of a new grant; epsilon and delta are further capped by the datasets' DP budgets.
# default_budgets = { jobs = 1000, epsilon = 10.0, delta = 1e-6, cpu_seconds = 36000.0, released_rows = 1000000 }

[jobs]
# workers = 2                          # jobs running at once
# per_user = 4                         # queued or running jobs per researcher
# memory_mib = 4096                    # per job; operators spill to DATA_DIR/spill beyond it
# deadline_secs = 600
# target_partitions = 0                # 0: number of cores
# campaign_flag_at = 5                 # jobs of one plan shape (other constants) flagged for review from
# campaign_suspend_at = 10             # ... and a suspension request in the audit log from
# lazy_sketches = true                 # differencing sketches only when unit counts make a comparison possible

[models]
# Researchers' WebAssembly models; a run shares its job's deadline and memory (above).
# max_component_mib = 64
# max_memory_mib = 1024                # linear memory of one model
# max_output_cells = 1000000
# max_log_kib = 64
# batch_rows = 8192                    # rows per input batch handed to a model
# max_params_bytes = 4096
# intake_timeout_secs = 600            # an upload compiles the component (seconds for C, ~20 s for Python)

[identity]
# session_ttl_minutes = 480
# Logins: failures per username (existing or not) before each further attempt waits a
# backoff doubling from backoff_base_secs up to lockout_minutes; answered 429 with Retry-After.
# max_failed_logins = 5
# backoff_base_secs = 2
# lockout_minutes = 15
# client_max_failed_logins = 20       # the same per client address
# password_hash_concurrency = 2       # Argon2 checks at once ...
# password_hash_queue = 16            # ... and waiting; beyond, 503 with Retry-After
# min_password_len = 12
# api_token_ttl_days = 90             # lifetime of an API token created without an expiry
# api_token_max_ttl_days = 365        # no API token lives longer
# one_time_code_hours = 72            # a new account's first password and a reset's code
# second_admin = true                 # stewards' and admins' creation and resets need another admin

# Grades (分类分级) and how each tightens the disclosure policy of its datasets.
# Omit the section to use the default L1..L4 scale.
# [[grades.levels]]
# name = "L1"
# min_threshold = 0
# auto_release_allowed = true
# row_level_output_allowed = true
# reviewers_required = 1
# joint_review = false
# max_nk_k = 0.8                      # optional: ceiling on the dominance rule's k
# min_p_ratio = 0.15                  # optional: floor on the p-ratio rule's p
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_file_parses_to_defaults() {
        let c: Config = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.catalog.not_open, NotOpenListing::Hidden);
        let m = c.models.options();
        let d = enclave::domain::ModelOptions::default();
        assert_eq!(
            (
                m.max_component_bytes,
                m.max_memory_bytes,
                m.max_output_cells
            ),
            (
                d.max_component_bytes,
                d.max_memory_bytes,
                d.max_output_cells
            )
        );
        assert_eq!(
            (m.max_log_bytes, m.batch_rows, m.max_params_bytes),
            (d.max_log_bytes, d.batch_rows, d.max_params_bytes)
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = toml::from_str::<Config>("lisen = \"127.0.0.1:1\"").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
