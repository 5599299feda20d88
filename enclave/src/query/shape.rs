//! A query's plan shape: a keyed hash of its optimised plan with every
//! constant blanked (to a NULL of its type), and its variant: the same with
//! the constants. Many variants of one shape under one grant are a search
//! over a bound (an oracle campaign: each job one bit of one person's value).
//!
//! The key comes from the master key (`Keyring::derive("plan-shapes")`):
//! outside the domain a stored shape says nothing about the query.

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::logical_expr::{Expr, LogicalPlan};

/// The shape and the variant of `plan` (the optimised plan), each as hex
/// of HMAC-SHA256 under `key`.
pub fn shape_keys(plan: &LogicalPlan, key: &[u8]) -> (String, String) {
    let variant = plan.display_indent().to_string();
    let blank = plan
        .clone()
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::Literal(v, meta) => {
                        let null =
                            ScalarValue::try_from(v.data_type()).unwrap_or(ScalarValue::Null);
                        Ok(Transformed::yes(Expr::Literal(null, meta)))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map(|t| t.data.display_indent().to_string())
        .unwrap_or_else(|_| variant.clone());
    (mac(key, &blank), mac(key, &variant))
}

fn mac(key: &[u8], text: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex::encode(&ring::hmac::sign(&key, text.as_bytes()).as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn keys(sql: &str) -> (String, String) {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (age BIGINT, base DOUBLE) AS VALUES (30, 1.0), (40, 2.0)")
            .await
            .unwrap();
        let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
        shape_keys(&plan, b"test key")
    }

    #[tokio::test]
    async fn constants_change_the_variant_not_the_shape() {
        let a = keys("SELECT count(*) FROM t WHERE age >= 30 AND base > 5000").await;
        let b = keys("SELECT count(*) FROM t WHERE age >= 30 AND base > 2500").await;
        let c = keys("SELECT count(*) FROM t WHERE age >= 30 AND base < 2500").await;
        assert_eq!(a.0, b.0);
        assert_ne!(a.1, b.1);
        assert_ne!(a.0, c.0, "another comparison is another shape");
        assert_eq!(
            a,
            keys("SELECT count(*) FROM t WHERE age >= 30 AND base > 5000").await
        );
    }
}
