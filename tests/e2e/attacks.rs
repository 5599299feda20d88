//! The attack suite: hostile queries through the real binary and HTTP. Each is
//! refused with the rule's code, or runs with small groups suppressed, or is
//! routed to review — and none returns an identifier value or a raw row of
//! conditional data.

use crate::common;

use crate::common::{
    People, TestServer, add_people, grant_on, prepared_data_dir, run, submit, wait_job,
};
use serde_json::{Value, json};

const SI: &[&str] = &[
    "person_id",
    "name",
    "sex",
    "birth_date",
    "district",
    "employer_credit_code",
    "contribution_base",
    "months_contributed",
];
const MC: &[&str] = &[
    "claim_id",
    "person_id",
    "hospital",
    "visit_type",
    "icd10_chapter",
    "claim_date",
    "amount",
];

/// What must happen to a query.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused at submission with this code (HTTP 422, or 400 for bad input).
    Refused(&'static str),
    /// Runs; every released group has enough persons, some were dropped.
    Suppressed,
    /// Runs and goes to review with this rule's verdict `fail` or `review`.
    Flagged(&'static str),
    /// Runs to its end: bad input gives NULL (total semantics), never a
    /// failure that depends on a value.
    Runs,
}

use Expect::*;

fn attacks() -> Vec<(&'static str, &'static str, Expect)> {
    vec![
        // 1. Isolation: statements, other tables, files.
        (
            "ddl external table",
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            Refused("statement_not_allowed"),
        ),
        (
            "ddl view",
            "CREATE VIEW v AS SELECT district FROM social_insurance",
            Refused("statement_not_allowed"),
        ),
        (
            "ddl drop",
            "DROP TABLE social_insurance",
            Refused("statement_not_allowed"),
        ),
        (
            "dml insert",
            "INSERT INTO social_insurance (district) VALUES ('x')",
            Refused("statement_not_allowed"),
        ),
        (
            "copy to file",
            "COPY (SELECT district FROM social_insurance) TO '/tmp/out.csv'",
            Refused("statement_not_allowed"),
        ),
        (
            "set variable",
            "SET datafusion.execution.batch_size = 1",
            Refused("statement_not_allowed"),
        ),
        (
            "explain analyze",
            "EXPLAIN ANALYZE SELECT count(*) FROM social_insurance",
            Refused("statement_not_allowed"),
        ),
        (
            "explain",
            "EXPLAIN SELECT count(*) FROM social_insurance",
            Refused("statement_not_allowed"),
        ),
        (
            "information schema",
            "SELECT table_name FROM information_schema.tables",
            Refused("table_not_granted"),
        ),
        (
            "raw table name",
            "SELECT count(*) FROM __anyu_raw_social_insurance",
            Refused("table_not_granted"),
        ),
        (
            "ungranted dataset",
            "SELECT count(*) FROM enterprise_registry",
            Refused("table_not_granted"),
        ),
        (
            "file url table",
            "SELECT count(*) FROM '/etc/passwd'",
            Refused("table_not_granted"),
        ),
        (
            "table function",
            "SELECT * FROM generate_series(1, 10)",
            Refused("table_not_granted"),
        ),
        (
            "file name function",
            "SELECT input_file_name(), count(*) FROM social_insurance GROUP BY 1",
            Refused("function_not_allowed"),
        ),
        (
            "two statements",
            "SELECT count(*) FROM social_insurance; SELECT 1",
            Refused("unsupported_query"),
        ),
        // 2. Identifiers in the output, directly or through expressions.
        (
            "identifier column",
            "SELECT person_id FROM social_insurance",
            Refused("identifier_in_output"),
        ),
        (
            "star",
            "SELECT * FROM social_insurance",
            Refused("identifier_in_output"),
        ),
        (
            "group by identifier",
            "SELECT person_id, count(*) FROM social_insurance GROUP BY person_id",
            Refused("identifier_in_output"),
        ),
        (
            "group by name",
            "SELECT name, count(*) FROM social_insurance GROUP BY name",
            Refused("identifier_in_output"),
        ),
        (
            "substr",
            "SELECT substr(person_id, 1, 6) AS area, count(*) FROM social_insurance GROUP BY 1",
            Refused("identifier_use"),
        ),
        (
            "concat",
            "SELECT concat(person_id, '') AS x, count(*) FROM social_insurance GROUP BY 1",
            Refused("identifier_use"),
        ),
        (
            "cast arithmetic",
            "SELECT CAST(substr(person_id, 7, 4) AS BIGINT) AS y, count(*) FROM social_insurance GROUP BY 1",
            Refused("identifier_use"),
        ),
        (
            "hash",
            "SELECT md5(person_id) AS h, count(*) FROM social_insurance GROUP BY 1",
            Refused("function_not_allowed"),
        ),
        (
            "sha256",
            "SELECT sha256(name) AS h FROM social_insurance",
            Refused("function_not_allowed"),
        ),
        (
            "min identifier",
            "SELECT district, min(person_id) FROM social_insurance GROUP BY district",
            Refused("identifier_use"),
        ),
        (
            "max identifier",
            "SELECT max(name) FROM social_insurance",
            Refused("identifier_use"),
        ),
        (
            "first_value",
            "SELECT first_value(person_id) OVER (PARTITION BY district) FROM social_insurance",
            Refused("function_not_allowed"),
        ),
        (
            "array_agg",
            "SELECT district, array_agg(person_id) FROM social_insurance GROUP BY district",
            Refused("function_not_allowed"),
        ),
        (
            "string_agg",
            "SELECT district, string_agg(name, ',') FROM social_insurance GROUP BY district",
            Refused("function_not_allowed"),
        ),
        (
            "regexp",
            "SELECT regexp_replace(person_id, '[0-9]', 'x') AS r, count(*) FROM social_insurance GROUP BY 1",
            Refused("identifier_use"),
        ),
        (
            "case trick",
            "SELECT CASE WHEN person_id LIKE '4403%' THEN 'a' ELSE 'b' END AS c, count(*) FROM social_insurance GROUP BY 1",
            Refused("identifier_use"),
        ),
        (
            "filter on identifier",
            "SELECT district, count(*) FROM social_insurance WHERE person_id = '440303199001010013' GROUP BY district",
            Refused("identifier_use"),
        ),
        (
            "length of name",
            "SELECT length(name) AS l, count(*) FROM social_insurance GROUP BY 1",
            Refused("identifier_use"),
        ),
        (
            "window over identifier",
            "SELECT district, row_number() OVER (ORDER BY min(person_id)) FROM social_insurance GROUP BY district",
            Refused("identifier_use"),
        ),
        (
            "join on a non-join identifier",
            "SELECT a.district, count(*) FROM social_insurance a JOIN social_insurance b ON a.name = b.name GROUP BY a.district",
            Refused("identifier_use"),
        ),
        (
            "join output identifier",
            "SELECT s.person_id, m.hospital FROM social_insurance s JOIN medical_claims m ON s.person_id = m.person_id",
            Refused("identifier_in_output"),
        ),
        (
            "reserved alias",
            "SELECT district, count(*) AS __anyu_rows9 FROM social_insurance GROUP BY district",
            Refused("reserved_name"),
        ),
        // 3. Row-level output hidden in unions, subqueries, CTEs, windows, limits.
        (
            "raw rows",
            "SELECT district, contribution_base FROM social_insurance",
            Refused("row_level_output"),
        ),
        (
            "order by limit 1",
            "SELECT contribution_base FROM social_insurance ORDER BY contribution_base DESC LIMIT 1",
            Refused("row_level_output"),
        ),
        (
            "union hides rows",
            "SELECT district, count(*) AS v FROM social_insurance GROUP BY district UNION ALL SELECT district, months_contributed FROM social_insurance",
            Refused("row_level_output"),
        ),
        (
            "cte hides rows",
            "WITH x AS (SELECT district, contribution_base FROM social_insurance) SELECT * FROM x",
            Refused("row_level_output"),
        ),
        (
            "subquery hides rows",
            "SELECT * FROM (SELECT district, birth_date FROM social_insurance) t",
            Refused("row_level_output"),
        ),
        (
            "scalar subquery row",
            "SELECT district, (SELECT contribution_base FROM social_insurance LIMIT 1) AS v, count(*) FROM social_insurance GROUP BY district",
            Refused("row_level_output"),
        ),
        (
            "window over rows",
            "SELECT sex, rank() OVER (PARTITION BY sex ORDER BY contribution_base) AS r FROM social_insurance",
            Refused("row_level_output"),
        ),
        (
            "per person rows",
            "SELECT count(*) FROM social_insurance GROUP BY person_id",
            Refused("row_level_output"),
        ),
        (
            "claims per person",
            "SELECT sum(amount) FROM medical_claims GROUP BY person_id",
            Refused("row_level_output"),
        ),
        (
            "distinct on",
            "SELECT DISTINCT ON (district) district, contribution_base FROM social_insurance",
            Refused("unsupported_query"),
        ),
        (
            "recursive cte",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n FROM r",
            Refused("unsupported_query"),
        ),
        // 4. The aggregation threshold (counted per person, not per row).
        (
            "tiny groups by birth date",
            "SELECT birth_date, count(*) AS n FROM social_insurance GROUP BY birth_date",
            Suppressed,
        ),
        (
            "one person by quasi-identifiers",
            "SELECT count(*) AS n, avg(contribution_base) AS a FROM social_insurance WHERE birth_date = DATE '1990-01-01' AND district = '福田区'",
            Suppressed,
        ),
        (
            "employer of one",
            "SELECT employer_credit_code, avg(contribution_base) AS a FROM social_insurance GROUP BY employer_credit_code",
            Suppressed,
        ),
        (
            "many claims few persons",
            "SELECT claim_date, count(*) AS claims FROM medical_claims GROUP BY claim_date",
            Suppressed,
        ),
        (
            "having below threshold",
            "SELECT district, sex, date_part('year', birth_date) AS y, count(*) AS n FROM social_insurance GROUP BY 1, 2, 3 HAVING count(*) < 5",
            Suppressed,
        ),
        // 5. Checks that route to review or suppress cells.
        (
            "extreme of a sensitive column",
            "SELECT district, max(contribution_base) AS top FROM social_insurance GROUP BY district",
            Flagged("extreme_values"),
        ),
        (
            "echo of a quasi-identifier",
            "SELECT sex, min(district) AS d FROM social_insurance GROUP BY sex",
            Flagged("echo"),
        ),
        (
            "small count inside a large group",
            "SELECT district, count(*) FILTER (WHERE contribution_base > 30000) AS rich FROM social_insurance GROUP BY district",
            // Withheld inside the plan (too few contributors), so the
            // frequency rule never sees the small count.
            Flagged("contributors"),
        ),
        (
            "statistic over a filtered subset",
            "SELECT district, avg(contribution_base) FILTER (WHERE months_contributed > 500) AS a FROM social_insurance GROUP BY district",
            Flagged("filtered_aggregate"),
        ),
        // 6. Errors carry no values.
        (
            "failing cast of names",
            "SELECT sum(CAST(district AS BIGINT)) AS s FROM social_insurance",
            Runs,
        ),
    ]
}

#[test]
fn hostile_queries_are_blocked_suppressed_or_reviewed() {
    let dir = prepared_data_dir(600, &["social_insurance", "medical_claims"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(
        &server,
        &p,
        &[("social_insurance", SI), ("medical_claims", MC)],
        "invisible",
    );
    // Every person's id and name: none may appear in any result.
    let (ids, names): (Vec<String>, Vec<String>) = {
        let csv = std::fs::read_to_string(dir.path().join("samples/social_insurance.csv")).unwrap();
        csv.lines()
            .skip(1)
            .map(|l| {
                let mut f = l.split(',');
                (f.next().unwrap().to_string(), f.next().unwrap().to_string())
            })
            .unzip()
    };
    let list = attacks();
    assert!(list.len() >= 40, "the suite has {} attacks", list.len());
    let mut failures = Vec::new();
    for (label, sql, expect) in &list {
        let (status, body) = submit(&server, &p.researcher, &grant, sql);
        let outcome: Result<(), String> = (|| match expect {
            Refused(code) => {
                if !(status == 422 || status == 400) || body["error"]["code"] != *code {
                    return Err(format!("expected refusal `{code}`, got {status} {body}"));
                }
                Ok(())
            }
            _ => {
                if status != 202 {
                    return Err(format!("expected the job to run, got {status} {body}"));
                }
                let own = wait_job(&server, &p.researcher, body["id"].as_str().unwrap());
                let id = own["id"].as_str().unwrap();
                // The researcher's view carries nothing the data decided.
                for field in common::WITHHELD_FROM_REQUESTER {
                    if own.get(field).is_some() {
                        return Err(format!("the requester sees {field}: {own}"));
                    }
                }
                let job = common::job_as(&server, &p.steward, id);
                match expect {
                    Suppressed => {
                        if job["suppressed_groups"].as_u64().unwrap_or(0) == 0 {
                            return Err(format!("expected suppressed groups: {job}"));
                        }
                    }
                    Flagged(rule) => {
                        let rules = job["checks"]["rules"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        let hit = rules
                            .iter()
                            .any(|r| r["rule"] == *rule && r["verdict"] != "pass");
                        if !hit || job["status"] != "pending_review" {
                            return Err(format!(
                                "expected rule `{rule}` to flag and review: {job}"
                            ));
                        }
                    }
                    Runs => {
                        if job["status"] == "failed" {
                            return Err(format!("expected the job to run to its end: {job}"));
                        }
                    }
                    Refused(_) => unreachable!(),
                }
                // Whatever ran: the candidate holds no identifier and no name.
                // (An admin reads every packet; a steward only those of jobs
                // that read their provider's data.)
                let packet = server.expect(
                    200,
                    "GET",
                    &format!("/api/jobs/{id}/review"),
                    Some(&p.admin),
                    None,
                );
                let text = packet["result"].to_string();
                if ids.iter().any(|i| text.contains(i.as_str())) {
                    return Err("a resident id reached the result".into());
                }
                if names.iter().any(|n| text.contains(n.as_str())) {
                    return Err("a name reached the result".into());
                }
                if let Some(checks) = packet["job"]["checks"]["rules"].as_array()
                    && let Expect::Flagged("echo") = expect
                {
                    // Echoed cells are suppressed (null) in the candidate.
                    let echo = checks.iter().find(|r| r["rule"] == "echo").unwrap();
                    let cells = echo["cells"].as_array().unwrap();
                    for c in cells {
                        let row = c["row"].as_u64().unwrap() as usize;
                        let col = c["column"].as_str().unwrap();
                        if !packet["result"][row][col].is_null() {
                            return Err(format!("echoed cell not suppressed: {c}"));
                        }
                    }
                }
                Ok(())
            }
        })();
        if let Err(e) = outcome {
            failures.push(format!("[{label}] {sql}\n    {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} attacks misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Refused submissions are audited with their code and spend no budget.
    let g = server.expect(
        200,
        "GET",
        &format!("/api/grants/{grant}"),
        Some(&p.researcher),
        None,
    );
    let ran = list
        .iter()
        .filter(|(_, _, e)| !matches!(e, Refused(_)))
        .count();
    assert_eq!(g["usage"]["jobs"], ran as u64);
    let denied = server.expect(
        200,
        "GET",
        "/api/audit/events?action=job.submit&limit=1000",
        Some(&p.auditor),
        None,
    );
    let n = denied
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .count();
    assert_eq!(n, list.len() - ran);
    server.stop();
    run(&data, &["audit", "verify"], true);
}

#[test]
fn suspended_revoked_and_expired_grants_run_nothing() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let sql = "SELECT district, count(*) AS n FROM social_insurance GROUP BY district";
    let g1 = grant_on(&server, &p, &[("social_insurance", SI)], "invisible");
    server.expect(
        200,
        "POST",
        &format!("/api/grants/{g1}/suspend"),
        Some(&p.steward),
        Some(&json!({ "reason": "核查中，暂停使用" })),
    );
    let (status, body) = submit(&server, &p.researcher, &g1, sql);
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("grant_suspended")),
        "{body}"
    );
    server.expect(
        200,
        "POST",
        &format!("/api/grants/{g1}/revoke"),
        Some(&p.admin),
        Some(&json!({ "reason": "超范围使用，终止服务" })),
    );
    let (status, body) = submit(&server, &p.researcher, &g1, sql);
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("grant_revoked")),
        "{body}"
    );
    // Another researcher cannot use someone else's grant.
    let g2 = grant_on(&server, &p, &[("social_insurance", SI)], "invisible");
    let (status, _) = submit(&server, &p.other_researcher, &g2, sql);
    assert_eq!(status, 403);
    server.stop();

    // Past its period: refused even before the sweep marks it expired.
    common::update_sealed(
        &data,
        "grants",
        "grant_json = json_set(grant_json, '$.valid_until', '2020-01-01T00:00:00Z')",
        &format!("id = '{g2}'"),
    );
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let (status, body): (u16, Value) = submit(&server, &p.researcher, &g2, sql);
    assert_eq!(status, 403, "{body}");
    assert!(
        matches!(body["error"]["code"].as_str(), Some("grant_expired")),
        "{body}"
    );
    server.stop();
}

/// The "with and without one person" attack through HTTP: two counts whose
/// WHERE bounds differ by exactly one person. The second goes to review;
/// the reviewer's packet shows the pair, the researcher sees only a verdict
/// that names neither the earlier job nor the difference.
#[test]
fn a_bound_moved_past_one_person_is_reviewed_with_the_pair() {
    let dir = prepared_data_dir(600, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(&server, &p, &[("social_insurance", SI)], "invisible");
    // A months_contributed value held by exactly one person, with plenty above it.
    let csv = std::fs::read_to_string(dir.path().join("samples/social_insurance.csv")).unwrap();
    let mut lines = csv.lines();
    let col = lines
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "months_contributed")
        .unwrap();
    let months: Vec<i64> = lines
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    let once = |v: i64| months.iter().filter(|m| **m == v).count() == 1;
    let above = |v: i64| months.iter().filter(|m| **m >= v).count();
    let v = months
        .iter()
        .copied()
        .find(|v| once(*v) && (100..=500).contains(&above(*v)))
        .expect("a value held by one person");
    let sql = |op: &str| {
        format!(
            "SELECT count(*) AS n, avg(contribution_base) AS mean FROM social_insurance WHERE months_contributed {op} {v}"
        )
    };
    let verdict = |job: &Value| {
        job["checks"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == "differencing")
            .map(|r| r["verdict"].clone())
    };
    let (status, first) = submit(&server, &p.researcher, &grant, &sql(">="));
    assert_eq!(status, 202, "{first}");
    let first = wait_job(&server, &p.researcher, first["id"].as_str().unwrap());
    let first = common::job_as(&server, &p.steward, first["id"].as_str().unwrap());
    assert_eq!(verdict(&first), Some(json!("pass")), "{first}");
    let first_id = first["id"].as_str().unwrap();

    let (status, second) = submit(&server, &p.researcher, &grant, &sql(">"));
    assert_eq!(status, 202, "{second}");
    let second = wait_job(&server, &p.researcher, second["id"].as_str().unwrap());
    let id = second["id"].as_str().unwrap();
    assert_eq!(second["status"], "pending_review", "{second}");
    let full = common::job_as(&server, &p.steward, id);
    assert_eq!(verdict(&full), Some(json!("review")), "{full}");
    assert!(!second.to_string().contains(first_id), "{second}");

    let packet = server.expect(
        200,
        "GET",
        &format!("/api/jobs/{id}/review"),
        Some(&p.steward),
        None,
    );
    let pairs = packet["differencing"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{packet}");
    assert_eq!(pairs[0]["other_job_id"], first_id);
    assert_eq!(pairs[0]["units_differing"], 1);
    assert_eq!(
        pairs[0]["other_cells"]["n"].as_i64().unwrap() - pairs[0]["cells"]["n"].as_i64().unwrap(),
        1
    );
    server.expect(
        403,
        "GET",
        &format!("/api/jobs/{id}/review"),
        Some(&p.researcher),
        None,
    );
}

/// Class 3 inside one query through HTTP, by a researcher with no earlier
/// result: everyone's total minus everyone's but one person's, as two
/// scalar subqueries. The result waits for review as a whole; the reviewer's
/// packet shows the two aggregates and the arithmetic; the researcher's own
/// view carries no verdict.
#[test]
fn a_difference_of_two_scalar_subqueries_is_reviewed() {
    let dir = prepared_data_dir(600, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(&server, &p, &[("social_insurance", SI)], "invisible");
    let csv = std::fs::read_to_string(dir.path().join("samples/social_insurance.csv")).unwrap();
    let mut lines = csv.lines();
    let col = lines
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "months_contributed")
        .unwrap();
    let months: Vec<i64> = lines
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    let v = months
        .iter()
        .copied()
        .find(|v| months.iter().filter(|m| *m == v).count() == 1)
        .expect("a value held by one person");
    let sql = format!(
        "SELECT (SELECT sum(contribution_base) FROM social_insurance) \
         - (SELECT sum(contribution_base) FROM social_insurance WHERE months_contributed <> {v}) AS d"
    );
    let (status, job) = submit(&server, &p.researcher, &grant, &sql);
    assert_eq!(status, 202, "{job}");
    let own = wait_job(&server, &p.researcher, job["id"].as_str().unwrap());
    let id = own["id"].as_str().unwrap();
    assert_eq!(own["status"], "pending_review", "{own}");
    assert!(own.get("checks").is_none_or(Value::is_null), "{own}");
    let full = common::job_as(&server, &p.steward, id);
    let rule = full["checks"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "differencing")
        .cloned()
        .unwrap();
    assert_eq!(rule["verdict"], "review", "{full}");
    let packet = server.expect(
        200,
        "GET",
        &format!("/api/jobs/{id}/review"),
        Some(&p.steward),
        None,
    );
    let pairs = packet["differencing"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{packet}");
    assert_eq!(pairs[0]["inner"], true);
    assert_eq!(pairs[0]["other_inner"], true);
    assert_eq!(pairs[0]["other_job_id"], id);
    assert_eq!(pairs[0]["units_differing"], 1);
    let words = pairs[0]["explanation"].as_str().unwrap();
    assert!(
        words.contains("sum(") && words.contains("1 person"),
        "{words}"
    );
}

/// A differencing pair across two grants of one researcher: the earlier job
/// (a grant on social-insurance data only) and the later one (a grant that
/// adds medical claims, whose steward therefore reviews it). The medical
/// steward may not read the earlier job, so the packet names it only as "a
/// job of another grant", without its SQL; the social-insurance steward, who
/// may read both, sees the SQL.
#[test]
fn the_review_packet_hides_another_grants_sql_from_a_reviewer_who_may_not_read_it() {
    let dir = prepared_data_dir(600, &["social_insurance", "medical_claims"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let only_si = grant_on(&server, &p, &[("social_insurance", SI)], "invisible");
    let both = grant_on(
        &server,
        &p,
        &[("social_insurance", SI), ("medical_claims", MC)],
        "invisible",
    );
    let csv = std::fs::read_to_string(dir.path().join("samples/social_insurance.csv")).unwrap();
    let mut lines = csv.lines();
    let col = lines
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "months_contributed")
        .unwrap();
    let months: Vec<i64> = lines
        .map(|l| l.split(',').nth(col).unwrap().parse().unwrap())
        .collect();
    let once = |v: i64| months.iter().filter(|m| **m == v).count() == 1;
    let above = |v: i64| months.iter().filter(|m| **m >= v).count();
    let v = months
        .iter()
        .copied()
        .find(|v| once(*v) && (100..=500).contains(&above(*v)))
        .expect("a value held by one person");
    let first_sql = format!(
        "SELECT count(*) AS n, avg(contribution_base) AS mean FROM social_insurance \
         WHERE months_contributed >= {v}"
    );
    let first = common::run_job(&server, &p.researcher, &only_si, &first_sql);
    let first_id = first["id"].as_str().unwrap().to_string();
    // The same persons but one, through a join that reads the claims and
    // keeps everyone (no claim has a negative amount).
    let second_sql = format!(
        "SELECT count(*) AS n, avg(s.contribution_base) AS mean FROM social_insurance s \
         LEFT ANTI JOIN (SELECT person_id FROM medical_claims WHERE amount < 0) m \
         ON s.person_id = m.person_id WHERE s.months_contributed > {v}"
    );
    let second = common::run_job(&server, &p.researcher, &both, &second_sql);
    let id = second["id"].as_str().unwrap();
    assert_eq!(second["status"], "pending_review", "{second}");

    let packet = |token: &str| {
        server.expect(
            200,
            "GET",
            &format!("/api/jobs/{id}/review"),
            Some(token),
            None,
        )
    };
    let medical = packet(&p.other_steward);
    let pairs = medical["differencing"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{medical}");
    assert_eq!(pairs[0]["other_job_id"], first_id.as_str());
    assert_eq!(
        pairs[0]["other_query"], "a job of another grant",
        "{medical}"
    );
    assert!(!medical.to_string().contains(&first_sql), "{medical}");
    assert!(pairs[0]["other_cells"].is_null(), "{medical}");
    // The social-insurance steward may read the earlier job: its SQL shows.
    let social = packet(&p.steward);
    assert_eq!(
        social["differencing"][0]["other_query"],
        first_sql.as_str(),
        "{social}"
    );
}
