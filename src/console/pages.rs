//! The console's pages and actions. Each is one or a few `Domain` calls —
//! the same ones the API handlers make — rendered as HTML; a refusal is the
//! domain's (authorized and audited there) and shows as its error page.

use std::collections::{BTreeMap, HashMap};

use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use enclave::audit::AuditFilter;
use enclave::catalog::{CatalogQuery, OpenType};
use enclave::disclosure::{CheckReport, Verdict};
use enclave::domain::{JobSight, ReviewDecision};
use enclave::release::ResultFormat;
use minijinja::{Value, context};

use super::i18n::{self, Lang};
use super::web::{
    LANG_COOKIE, PRE_CSRF_COOKIE, SESSION_COOKIE, Visitor, key, local_path, set_cookie,
};

type Params = Query<HashMap<String, String>>;
type Fields = Form<HashMap<String, String>>;

/// A non-empty trimmed parameter.
fn param(p: &HashMap<String, String>, name: &str) -> Option<String> {
    p.get(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// `GET /console`.
pub async fn home() -> Response {
    see_other("/console/catalog")
}

/// `POST /console/lang`: remember the language in a cookie (a year).
pub async fn set_lang(v: Visitor, Form(f): Fields) -> Response {
    if !v.csrf_ok(f.get("csrf").map(String::as_str)) {
        return v.csrf_refused();
    }
    let lang = Lang::from_code(f.get("lang").map_or("", String::as_str));
    let mut resp = see_other(&local_path(f.get("back").map(String::as_str)));
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LANG_COOKIE, lang.code(), v.secure, Some(31_536_000)),
    );
    v.cookies(resp.headers_mut());
    resp
}

/// `GET /console/signin`.
pub async fn signin_form(v: Visitor, Query(q): Params) -> Response {
    v.page(
        "signin.html",
        key("page.signin"),
        "",
        context! { next => local_path(q.get("next").map(String::as_str)) },
    )
}

/// `POST /console/signin`: `Domain::login`, the API's lockout and answers.
pub async fn signin(v: Visitor, Form(f): Fields) -> Response {
    if !v.csrf_ok(f.get("csrf").map(String::as_str)) {
        return v.csrf_refused();
    }
    let username = f.get("username").cloned().unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let next = local_path(f.get("next").map(String::as_str));
    match v
        .domain()
        .login(username.trim(), &password, &v.client)
        .await
    {
        Ok(s) => {
            // Rotation: a session the browser still held ends here.
            if let (Some(p), Some(old)) = (v.principal(), v.token.as_deref()) {
                let _ = v.domain().logout(p, old).await;
            }
            let lifetime = chrono::DateTime::parse_from_rfc3339(&s.expires_at)
                .ok()
                .map(|t| (t.timestamp() - chrono::Utc::now().timestamp()).max(0) as u64);
            let mut resp = see_other(&next);
            let h = resp.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &s.token, v.secure, lifetime),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(PRE_CSRF_COOKIE, "", v.secure, Some(0)),
            );
            resp
        }
        Err(enclave::Error::Unauthenticated(_)) => v.page_with_status(
            StatusCode::UNAUTHORIZED,
            "signin.html",
            key("page.signin"),
            "",
            context! { next => next, username => username, failed => true },
        ),
        Err(e) => v.fail(e),
    }
}

/// `POST /console/signout`: ends the session (`Domain::logout`).
pub async fn signout(v: Visitor, Form(f): Fields) -> Response {
    if !v.csrf_ok(f.get("csrf").map(String::as_str)) {
        return v.csrf_refused();
    }
    if let (Some(p), Some(t)) = (v.principal(), v.token.as_deref())
        && let Err(e) = v.domain().logout(p, t).await
    {
        return v.fail(e);
    }
    let mut resp = see_other("/console/catalog");
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", v.secure, Some(0)),
    );
    resp
}

/// `GET /console/catalog`: search with filters.
pub async fn catalog(v: Visitor, Query(q): Params) -> Response {
    let open_type = match param(&q, "open_type") {
        None => None,
        Some(s) => match serde_json::from_value::<OpenType>(serde_json::Value::String(s)) {
            Ok(t) => Some(t),
            Err(_) => return v.error_page(StatusCode::BAD_REQUEST, "invalid_query", None),
        },
    };
    let query = CatalogQuery {
        text: param(&q, "q"),
        provider: param(&q, "provider"),
        open_type,
        grade: param(&q, "grade"),
    };
    let listing = match v.domain().catalog(v.principal(), &query).await {
        Ok(l) => l,
        Err(e) => return v.fail(e),
    };
    // The filter choices come from the whole catalog as this visitor sees it.
    let all = match v
        .domain()
        .catalog(v.principal(), &CatalogQuery::default())
        .await
    {
        Ok(l) => l,
        Err(e) => return v.fail(e),
    };
    let mut providers: Vec<String> = all.iter().map(|d| d.entry.provider.clone()).collect();
    providers.sort();
    providers.dedup();
    let mut grades: Vec<String> = all.iter().map(|d| d.entry.grade.clone()).collect();
    grades.sort();
    grades.dedup();
    v.page(
        "catalog.html",
        key("page.catalog"),
        "",
        context! {
            datasets => Value::from_serialize(&listing),
            providers => providers,
            grades => grades,
            open_types => ["unconditional", "conditional", "not_open"],
            q => Value::from_serialize(&q),
        },
    )
}

/// `GET /console/catalog/{id}`.
pub async fn dataset(v: Visitor, Path(id): Path<String>) -> Response {
    if !enclave::catalog::is_dataset_id(&id) {
        return v.error_page(StatusCode::BAD_REQUEST, "invalid_query", None);
    }
    match v.domain().catalog_entry(v.principal(), &id).await {
        Ok(d) => {
            let title = if v.lang == Lang::En {
                d.entry.title.en.clone()
            } else {
                d.entry.title.zh.clone()
            };
            v.page(
                "dataset.html",
                key("page.dataset"),
                &title,
                context! { d => Value::from_serialize(&d) },
            )
        }
        Err(e) => v.fail(e),
    }
}

/// Budgets left of a grant, for the templates.
fn left(g: &enclave::access::Grant) -> Value {
    let b = &g.budgets;
    let u = &g.usage;
    context! {
        jobs => b.jobs.saturating_sub(u.jobs),
        epsilon => (b.epsilon - u.epsilon).max(0.0),
        cpu_seconds => (b.cpu_seconds - u.cpu_seconds).max(0.0),
        released_rows => b.released_rows.saturating_sub(u.released_rows),
    }
}

/// `GET /console/grants`: the caller's grants with budgets left and validity.
pub async fn grants(v: Visitor) -> Response {
    match v.domain().grants_for(v.principal()).await {
        Ok(list) => {
            let rows: Vec<Value> = list
                .iter()
                .map(|g| context! { g => Value::from_serialize(g), left => left(g) })
                .collect();
            v.page(
                "grants.html",
                key("page.grants"),
                "",
                context! { grants => rows },
            )
        }
        Err(e) => v.fail(e),
    }
}

/// The workbench of grant `id`, with `sql` in the editor and `error` (a code)
/// above it.
async fn workbench_page(
    v: &Visitor,
    id: &str,
    sql: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let g = match v.domain().grant_view(v.principal(), id).await {
        Ok(g) => g,
        Err(e) => return v.fail(e),
    };
    let mut tables = Vec::new();
    for d in &g.grant.datasets {
        // Column types and sensitivity from the catalog, where it lists them.
        let info = v
            .domain()
            .catalog_entry(v.principal(), &d.dataset_id)
            .await
            .ok();
        let columns: Vec<Value> = d
            .columns
            .iter()
            .map(|c| {
                let col = info
                    .as_ref()
                    .and_then(|i| i.entry.columns.iter().find(|x| &x.name == c));
                context! {
                    name => c,
                    kind => col.map(|x| Value::from_serialize(x.data_type)),
                    sensitivity => col.map(|x| Value::from_serialize(x.sensitivity)),
                }
            })
            .collect();
        tables.push(context! { name => d.dataset_id.clone(), columns => columns });
    }
    let jobs: Vec<Value> = match v.domain().jobs_for(v.principal()).await {
        Ok(js) => js
            .iter()
            .map(Value::from_serialize)
            .filter(|j| {
                j.get_attr("grant_id")
                    .ok()
                    .and_then(|x| x.as_str().map(|s| s == id))
                    .unwrap_or(false)
            })
            .collect(),
        Err(e) => return v.fail(e),
    };
    let error_text = error.map(|code| explain(v.lang, code));
    v.page_with_status(
        status,
        "workbench.html",
        key("page.workbench"),
        id,
        context! {
            g => Value::from_serialize(&g),
            left => left(&g.grant),
            tables => tables,
            jobs => jobs,
            sql => sql,
            error => error_text,
            error_code => error,
        },
    )
}

/// A code in words.
fn explain(lang: Lang, code: &str) -> String {
    if i18n::CODES.contains(&code) {
        i18n::tr(lang, &format!("code.{code}"))
    } else {
        format!("{} ({code})", i18n::tr(lang, "code.other"))
    }
}

/// `GET /console/grants/{id}`: the query workbench.
pub async fn workbench(v: Visitor, Path(id): Path<String>) -> Response {
    workbench_page(&v, &id, "", None, StatusCode::OK).await
}

/// `POST /console/grants/{id}/jobs`: submit SQL (`Domain::submit_query`).
pub async fn submit(v: Visitor, Path(id): Path<String>, Form(f): Fields) -> Response {
    if !v.csrf_ok(f.get("csrf").map(String::as_str)) {
        return v.csrf_refused();
    }
    let sql = f.get("sql").cloned().unwrap_or_default();
    match v
        .domain_arc()
        .submit_query(v.principal(), &id, &sql, None)
        .await
    {
        Ok(job) => see_other(&format!("/console/jobs/{}", job.id)),
        // A refusal of the query (or a spent budget) keeps the text typed.
        Err(e @ (enclave::Error::Refused { .. } | enclave::Error::Denied { .. })) => {
            let code = e.code();
            let status = crate::server::error::ApiError::from(e)
                .into_response()
                .status();
            workbench_page(&v, &id, &sql, Some(code), status).await
        }
        Err(e) => v.fail(e),
    }
}

/// A released result read back from its CSV for display: header and rows.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    let mut it = records.into_iter();
    let header = it.next().unwrap_or_default();
    (header, it.collect())
}

/// Rows of a released table shown on the page; the download has them all.
const SHOWN_ROWS: usize = 500;

/// The job's state as the fragment shows it (polled while it can change).
async fn job_state(v: &Visitor, id: &str) -> Result<Value, Response> {
    let sight = match v.domain().job_view(v.principal(), id).await {
        Ok(j) => j,
        Err(e) => return Err(v.fail(e)),
    };
    let status = sight.status();
    let release_id = match &sight {
        JobSight::Full(j) => j.release_id.clone(),
        JobSight::Own(o) => o.release_id.clone(),
    };
    let error_code = match &sight {
        JobSight::Full(j) => j.job.error_code.clone(),
        JobSight::Own(o) => o.error_code.clone(),
    };
    let mut result = Value::UNDEFINED;
    if let Some(rid) = &release_id {
        match v
            .domain()
            .release_file(v.principal(), rid, ResultFormat::Csv)
            .await
        {
            Ok(bytes) => {
                let (header, rows) = parse_csv(&String::from_utf8_lossy(&bytes));
                let total = rows.len();
                let rows: Vec<Vec<String>> = rows.into_iter().take(SHOWN_ROWS).collect();
                result = context! {
                    header => header,
                    rows => rows,
                    total => total,
                    formats => ResultFormat::ALL.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                };
            }
            // A reviewer who may read the job may not download its release.
            Err(enclave::Error::Forbidden | enclave::Error::Denied { .. }) => {}
            Err(e) => return Err(v.fail(e)),
        }
    }
    Ok(context! {
        job => Value::from_serialize(&sight),
        status => status.as_str(),
        done => status.is_final(),
        error_text => error_code.as_deref().map(|c| explain(v.lang, c)),
        release_id => release_id,
        result => result,
    })
}

/// `GET /console/jobs/{id}`.
pub async fn job(v: Visitor, Path(id): Path<String>) -> Response {
    match job_state(&v, &id).await {
        Ok(ctx) => v.page("job.html", key("page.job"), &id, ctx),
        Err(resp) => resp,
    }
}

/// `GET /console/jobs/{id}/state`: the state fragment htmx polls.
pub async fn job_fragment(v: Visitor, Path(id): Path<String>) -> Response {
    match job_state(&v, &id).await {
        Ok(ctx) => {
            let lang = v.lang.code();
            v.html(
                StatusCode::OK,
                "job_state.html",
                minijinja::value::merge_maps([context! { lang => lang }, ctx]),
            )
        }
        Err(resp) => resp,
    }
}

/// `GET /console/releases/{id}/download?format=`: the file, audited by the domain.
pub async fn download(v: Visitor, Path(id): Path<String>, Query(q): Params) -> Response {
    let format = match ResultFormat::parse(q.get("format").map_or("csv", String::as_str)) {
        Ok(f) => f,
        Err(e) => return v.fail(e),
    };
    match v.domain().release_file(v.principal(), &id, format).await {
        Ok(bytes) => attachment(
            format.mime(),
            &format!("release-{id}.{}", format.extension()),
            bytes,
        ),
        Err(e) => v.fail(e),
    }
}

/// `GET /console/releases/{id}/certificate`.
pub async fn certificate(v: Visitor, Path(id): Path<String>) -> Response {
    match v.domain().read_release(v.principal(), &id).await {
        Ok(r) => attachment(
            "application/json",
            &format!("release-{}.certificate.json", r.id),
            r.certificate_json.into_bytes(),
        ),
        Err(e) => v.fail(e),
    }
}

fn attachment(mime: &str, filename: &str, bytes: Vec<u8>) -> Response {
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    if let Ok(m) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, m);
    }
    if let Ok(d) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, d);
    }
    resp
}

/// `GET /console/reviews`: the output review queue.
pub async fn reviews(v: Visitor) -> Response {
    match v.domain().review_queue(v.principal()).await {
        Ok(q) => v.page(
            "reviews.html",
            key("page.reviews"),
            "",
            context! { jobs => Value::from_serialize(&q) },
        ),
        Err(e) => v.fail(e),
    }
}

/// One rule's verdict on a cell: rule, verdict, reason.
type Finding = (String, Verdict, String);

/// The candidate result with each cell's verdicts, for the review page.
fn verdict_table(
    result: &[serde_json::Value],
    checks: Option<&serde_json::Value>,
) -> (Vec<String>, Vec<Value>, Vec<Value>) {
    let report: Option<CheckReport> = checks.and_then(|c| serde_json::from_value(c.clone()).ok());
    // (row, column) → [(rule, verdict, reason)]
    let mut cells: BTreeMap<(u64, String), Vec<Finding>> = BTreeMap::new();
    let mut whole = Vec::new();
    if let Some(r) = &report {
        for rule in &r.rules {
            for c in &rule.cells {
                match (c.row, &c.column) {
                    (Some(row), Some(col)) => cells.entry((row, col.clone())).or_default().push((
                        rule.rule.clone(),
                        c.verdict,
                        c.reason.clone(),
                    )),
                    _ => whole.push(context! {
                        rule => rule.rule.clone(),
                        verdict => Value::from_serialize(c.verdict),
                        reason => c.reason.clone(),
                        row => c.row,
                        column => c.column.clone(),
                    }),
                }
            }
        }
    }
    let columns: Vec<String> = result
        .first()
        .and_then(|r| r.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let mut findings = Vec::new();
    let rows = result
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let cells_out: Vec<Value> = columns
                .iter()
                .map(|col| {
                    let value = row.get(col).cloned().unwrap_or(serde_json::Value::Null);
                    let verdicts = cells.get(&(i as u64, col.clone()));
                    let worst = verdicts
                        .and_then(|vs| vs.iter().map(|(_, v, _)| *v).max())
                        .unwrap_or(Verdict::Pass);
                    let class = match worst {
                        Verdict::Fail if value.is_null() => "cell-suppressed cell-fail",
                        Verdict::Fail => "cell-fail",
                        Verdict::Review => "cell-review",
                        Verdict::Pass => "",
                    };
                    if let Some(vs) = verdicts {
                        for (rule, verdict, reason) in vs {
                            findings.push(context! {
                                row => i, column => col.clone(), rule => rule.clone(),
                                verdict => Value::from_serialize(verdict), reason => reason.clone(),
                            });
                        }
                    }
                    let shown = match &value {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    context! { value => shown, class => class, null => value.is_null() }
                })
                .collect();
            context! { index => i, cells => cells_out }
        })
        .collect();
    let mut all_findings = whole;
    all_findings.extend(findings);
    (columns, rows, all_findings)
}

/// `GET /console/reviews/{id}`: the review packet (blind review as the
/// packet gives it: other votes only once the caller voted).
pub async fn review(v: Visitor, Path(id): Path<String>) -> Response {
    let packet = match v.domain().review_packet(v.principal(), &id).await {
        Ok(p) => p,
        Err(e) => return v.fail(e),
    };
    let (columns, rows, findings) = verdict_table(&packet.result, packet.job.checks.as_ref());
    v.page(
        "review.html",
        key("page.review"),
        &id,
        context! {
            p => Value::from_serialize(&packet),
            columns => columns,
            rows => rows,
            findings => findings,
        },
    )
}

/// `POST /console/reviews/{id}`: approve or reject with a comment.
pub async fn vote(v: Visitor, Path(id): Path<String>, Form(f): Fields) -> Response {
    if !v.csrf_ok(f.get("csrf").map(String::as_str)) {
        return v.csrf_refused();
    }
    let decision = match f.get("decision").map(String::as_str) {
        Some("approve") => ReviewDecision::Approve,
        Some("reject") => ReviewDecision::Reject,
        _ => return v.error_page(StatusCode::BAD_REQUEST, "invalid_query", None),
    };
    let comment = f.get("comment").cloned().unwrap_or_default();
    match v
        .domain()
        .review_job(v.principal(), &id, decision, &comment)
        .await
    {
        Ok(_) => see_other(&format!("/console/reviews/{id}")),
        Err(e) => v.fail(e),
    }
}

/// Events per audit page.
const AUDIT_PAGE: u64 = 50;

/// `GET /console/audit`: the event log with filters and paging.
pub async fn audit(v: Visitor, Query(q): Params) -> Response {
    let since_seq = match param(&q, "after").map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return v.error_page(StatusCode::BAD_REQUEST, "invalid_query", None),
    };
    let filter = AuditFilter {
        actor: param(&q, "actor"),
        action: param(&q, "action"),
        object: param(&q, "object"),
        since_seq,
        limit: Some(AUDIT_PAGE),
    };
    let events = match v.domain().audit_events(v.principal(), &filter).await {
        Ok(e) => e,
        Err(e) => return v.fail(e),
    };
    let next = (events.len() as u64 == AUDIT_PAGE)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    // The outcome filter applies to the page the domain returned.
    let outcome = param(&q, "outcome");
    let shown: Vec<_> = events
        .iter()
        .filter(|e| {
            outcome.as_deref().is_none_or(|o| {
                serde_json::to_value(e.outcome)
                    .ok()
                    .and_then(|x| x.as_str().map(|s| s == o))
                    .unwrap_or(false)
            })
        })
        .collect();
    let mut next_query = q.clone();
    if let Some(n) = next {
        next_query.insert("after".into(), n.to_string());
    }
    let next_href = next.map(|_| {
        let qs: Vec<String> = next_query
            .iter()
            .map(|(k, val)| {
                format!(
                    "{}={}",
                    super::web::percent_encode(k),
                    super::web::percent_encode(val)
                )
            })
            .collect();
        format!("/console/audit?{}", qs.join("&"))
    });
    v.page(
        "audit.html",
        key("page.audit"),
        "",
        context! {
            events => Value::from_serialize(&shown),
            q => Value::from_serialize(&q),
            outcomes => ["success", "denied", "failure"],
            next_href => next_href,
            first_href => "/console/audit",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_csv_is_read_back_with_quotes() {
        let (h, rows) = parse_csv("a,b\n\"x, \"\"y\"\"\",2\n3,\n");
        assert_eq!(h, vec!["a", "b"]);
        assert_eq!(rows, vec![vec!["x, \"y\"", "2"], vec!["3", ""]]);
    }
}
