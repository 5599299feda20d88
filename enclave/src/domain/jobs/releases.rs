//! Release and downloads: the signed certificate, the sealed result files,
//! and reading them back for those allowed.

use crate::access::authz::{self, Action, Object};
use crate::audit::Outcome;
use crate::domain::access::shown_id;
use crate::domain::{Actor, Domain, audit_object};
use crate::identity::Principal;
use crate::release::{self, Certificate, ResultFormat};
use crate::storage::blob;
use crate::store::{JobRecord, ReleaseFile, ReleaseRecord};
use crate::{Error, Result};

use super::{charge_error, job_object};

/// A committed release and what its audit event says.
struct StoredRelease {
    record: ReleaseRecord,
    rows: u64,
    charge: crate::access::Usage,
    reviewers: Vec<String>,
    formats: serde_json::Value,
}

impl Domain {
    /// Releases a checked or reviewed job: the four formats sealed, the
    /// certificate signed, the released-rows budget charged. Audited as `job.release`.
    ///
    /// The transition is claimed first (a conditional UPDATE of the job), so
    /// a rejection racing the final approval either wins before anything is
    /// sealed or fails its own revision check; the files are removed again
    /// if the release does not commit, and the budget is charged in the
    /// release's own transaction.
    pub(super) async fn release_job(
        &self,
        job: &mut JobRecord,
        reviewers: Vec<release::Reviewer>,
    ) -> Result<ReleaseRecord> {
        if !self
            .store
            .claim_job_for_release(&job.id, job.revision)
            .await?
        {
            return Err(Error::Conflict(
                "the job changed meanwhile (another decision came first); reload it".into(),
            ));
        }
        job.revision += 1;
        let release_id = uuid::Uuid::now_v7().to_string();
        let dir = self.dir.release(&release_id);
        let done = self
            .seal_and_store_release(job, reviewers, &release_id)
            .await;
        if done.is_err() && dir.exists() {
            // Nothing refers to the files of a release that did not commit.
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::error!(error = %e, release = %release_id, "could not remove an uncommitted release");
            }
        }
        let done = done?;
        self.record(
            &Actor::system(),
            "job.release",
            job_object(&job.id),
            Outcome::Success,
            serde_json::json!({
                "release_id": release_id,
                "rows": done.rows,
                "reviewers": done.reviewers,
                "formats": done.formats,
                "charged": done.charge,
            }),
        )
        .await?;
        *job = self.job(&job.id).await?;
        Ok(done.record)
    }

    async fn seal_and_store_release(
        &self,
        job: &JobRecord,
        reviewers: Vec<release::Reviewer>,
        release_id: &str,
    ) -> Result<StoredRelease> {
        let release_id = release_id.to_string();
        let (schema, batches) = self.candidate(job).await?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let grant = self.grant(&job.grant_id).await?;
        let charge = crate::access::Usage {
            released_rows: rows,
            ..Default::default()
        };
        let files = release::result_files(&schema, &batches)?;
        let dir = self.dir.release(&release_id);
        let mut stored = Vec::new();
        for (format, bytes) in &files {
            let aad = blob::SealedFor::Release {
                release: &release_id,
                format: format.as_str(),
            }
            .aad();
            let (key, sealed) = blob::seal(&self.keyring, &aad, bytes)?;
            let path = dir.join(format!("{}.bin", format.as_str()));
            tokio::task::spawn_blocking(move || blob::write_new_file(&path, &sealed))
                .await
                .map_err(|e| Error::Internal(format!("release write task failed: {e}")))??;
            stored.push(ReleaseFile {
                format: format.as_str().to_string(),
                bytes: bytes.len() as u64,
                sha256: release::sha256_hex(bytes),
                wrapped_key: key,
            });
        }
        let user = self.identity.get_user_by_id(&job.requester_id).await?;
        let providers = grant.providers().join("、");
        let now = release::certificate_time(self.now());
        let cert = release::sign(
            &self.keyring,
            Certificate {
                format: release::CERTIFICATE_FORMAT.into(),
                release_id: release_id.clone(),
                job_id: job.id.clone(),
                grant_id: grant.id.clone(),
                application_id: grant.application_id.clone(),
                researcher: release::Researcher {
                    user_id: user.id.clone(),
                    username: user.username.clone(),
                    organisation: user.organisation.clone(),
                },
                query: release::QuerySection {
                    kind: if job.model_sha256.is_some() {
                        release::QueryKind::Model
                    } else {
                        release::QueryKind::Sql
                    },
                    text: job.query_text.clone(),
                    plan_summary: job.plan_summary.clone().unwrap_or_default(),
                    model: job.model_sha256.as_ref().map(|sha| release::ModelSection {
                        sha256: sha.clone(),
                        params: job.model_params.clone().unwrap_or_default(),
                    }),
                },
                datasets: job
                    .datasets
                    .iter()
                    .map(|d| release::DatasetEntry {
                        dataset_id: d.dataset_id.clone(),
                        version: d.version,
                        sha256: d.sha256.clone(),
                    })
                    .collect(),
                result: release::result_section(&schema, &batches, &files),
                checks: job.checks.clone().unwrap_or_else(|| serde_json::json!({})),
                reviewers,
                dp: job.dp.clone(),
                released_at: now.clone(),
                citation: format!(
                    "数据来源：{providers}；经安域公共数据安全域审核发布（发布编号 {release_id}）"
                ),
                platform_key_id: String::new(),
                platform_signature: String::new(),
            },
        )?;
        let record = ReleaseRecord {
            id: release_id.clone(),
            job_id: job.id.clone(),
            grant_id: grant.id.clone(),
            certificate_json: cert.to_json(),
            files: stored,
            released_at: now,
        };
        if let Err(r) = self.store.insert_release(&record, job, &charge).await? {
            return Err(charge_error(&r));
        }
        let names = cert.reviewers.iter().map(|r| r.username.clone()).collect();
        let formats = serde_json::to_value(&cert.result.formats)
            .map_err(|_| Error::Internal("formats always serialize".into()))?;
        Ok(StoredRelease {
            record,
            rows,
            charge,
            reviewers: names,
            formats,
        })
    }

    /// One release.
    pub async fn release(&self, id: &str) -> Result<ReleaseRecord> {
        self.store
            .release(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("release `{}`", shown_id(id))))
    }

    /// The release `id`, once `caller` may perform `action` on it (401,
    /// then 404, then 403). Releases are judged as their grant's jobs.
    pub(super) async fn authorized_release<'a>(
        &self,
        caller: Option<&'a Principal>,
        action: Action,
        id: &str,
    ) -> Result<(&'a Principal, ReleaseRecord)> {
        let object = audit_object("release", id);
        let p = self.signed_in(caller, action, &object).await?;
        let r = self.release(id).await?;
        let grant = self.grant(&r.grant_id).await?;
        let providers = grant.providers();
        let target = Object::Job {
            requester_id: &grant.holder_id,
            providers: &providers,
        };
        self.authorize(Some(p), action, &target, &object).await?;
        Ok((p, r))
    }

    /// One release with its certificate, as `caller` may read it.
    pub async fn read_release<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<ReleaseRecord> {
        let (_, r) = self
            .authorized_release(caller.into(), Action::ReadRelease, id)
            .await?;
        Ok(r)
    }

    /// The releases `p` may read.
    pub async fn releases_for<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<ReleaseRecord>> {
        let p = self.list_for(caller.into(), "releases").await?;
        let mut out = Vec::new();
        for r in self.store.list_releases().await? {
            let g = self.grant(&r.grant_id).await?;
            let providers = g.providers();
            let object = Object::Job {
                requester_id: &g.holder_id,
                providers: &providers,
            };
            if authz::may_read(p, &object) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A released file, decrypted and checked against the certificate's hash.
    /// Audited as `release.download`.
    pub async fn release_file<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        format: ResultFormat,
    ) -> Result<Vec<u8>> {
        let (p, r) = self
            .authorized_release(caller.into(), Action::DownloadRelease, id)
            .await?;
        let f = r
            .files
            .iter()
            .find(|f| f.format == format.as_str())
            .ok_or_else(|| Error::NotFound("release file".into()))?;
        let path = self
            .dir
            .release(&r.id)
            .join(format!("{}.bin", format.as_str()));
        let sealed = std::fs::read(&path).map_err(Error::io("read", &path))?;
        let aad = blob::SealedFor::Release {
            release: &r.id,
            format: format.as_str(),
        }
        .aad();
        let bytes = blob::open(&self.keyring, &f.wrapped_key, &aad, &sealed)?;
        if release::sha256_hex(&bytes) != f.sha256 {
            return Err(Error::Crypto(
                "the released file does not match its certificate".into(),
            ));
        }
        self.record(
            &Actor::user(p),
            "release.download",
            format!("release:{}", r.id),
            Outcome::Success,
            serde_json::json!({ "format": format.as_str(), "bytes": bytes.len() }),
        )
        .await?;
        Ok(bytes)
    }
}
