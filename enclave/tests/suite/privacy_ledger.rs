//! ε is accounted per researcher and dataset across all their grants: the
//! same researcher asking the same question through two grants approved a
//! minute apart spends one budget, the dataset's; each grant's own budget
//! stays a further cap. Attacked as the issue describes: spend most of the
//! budget through one grant, then ask again through a second, fresh grant.

use crate::support;

use crate::support::Lab;

fn manifest() -> String {
    support::crafted_manifest(
        "ledger",
        ("隐私预算", "privacy budgets"),
        r#"
[[columns]]
name = "grp"
type = "int64"
description = { zh = "组", en = "Group" }
sensitivity = "attribute"

[disclosure]
threshold = 10
frequency_threshold = 10
max_output_rows = 10000
auto_release = false
row_level_output = false
dp = { required = false, epsilon_budget = 2.0, delta_budget = 1e-6 }
"#,
    )
}

fn query(epsilon: f64) -> String {
    format!(
        "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = {epsilon}) count(*) AS n FROM ledger"
    )
}

#[tokio::test]
async fn epsilon_is_charged_per_researcher_across_grants() {
    let lab = Lab::new().await;
    let mut csv = String::from("person,grp\n");
    for i in 1..=60 {
        csv.push_str(&format!("{i},{}\n", i % 3));
    }
    let path = lab.dir.path().join("ledger.csv");
    std::fs::write(&path, csv).unwrap();
    let first = lab.dataset(&manifest(), &path).await;
    let second = lab.grant("ledger").await;
    for g in [&first, &second] {
        let grant = lab.domain.store().grant(g).await.unwrap().unwrap();
        assert_eq!(
            grant.budgets.epsilon, 2.0,
            "each grant may spend the dataset's ε"
        );
    }
    let submit = |grant: &str, epsilon: f64| {
        let (lab, grant) = (&lab, grant.to_string());
        async move {
            lab.domain
                .submit_job(&lab.researcher, &grant, &query(epsilon))
                .await
        }
    };
    submit(&first, 1.5).await.unwrap();
    // The budget left a researcher is told is the binding one: the second
    // grant has 2.0 of its own, the researcher 0.5 on the dataset.
    let probe = submit(&second, 0.25).await.unwrap();
    let job = lab.domain.store().job(&probe.id).await.unwrap().unwrap();
    let left = job.dp.as_ref().unwrap().budget_left.unwrap();
    assert!((left.epsilon - 0.25).abs() < 1e-9, "{left:?}");
    // The second grant has spent little, but its researcher has spent more.
    let e = submit(&second, 1.5).await.unwrap_err();
    assert_eq!(e.code(), "budget_exhausted", "{e}");
    assert!(
        e.to_string().contains("all of the researcher's grants"),
        "{e}"
    );
    // What is left of the dataset's budget may still be spent, through either grant.
    submit(&second, 0.25).await.unwrap();
    let e = submit(&first, 0.1).await.unwrap_err();
    assert_eq!(e.code(), "budget_exhausted", "{e}");
    // The refused job charged neither grant.
    let a = lab.domain.store().grant(&first).await.unwrap().unwrap();
    let b = lab.domain.store().grant(&second).await.unwrap().unwrap();
    assert!((a.usage.epsilon - 1.5).abs() < 1e-9, "{:?}", a.usage);
    assert!((b.usage.epsilon - 0.5).abs() < 1e-9, "{:?}", b.usage);
}
