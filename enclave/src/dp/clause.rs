//! `SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (…)`, recognised on sqlparser's
//! tokens (never by pattern matching on text) and cut out of the SQL, which
//! is then planned as usual.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use super::DpOptions;
use crate::query::policy::refuse;
use crate::{Error, Result};

fn bad(message: impl Into<String>) -> Error {
    refuse("dp_options_invalid", message)
}

/// Byte offset of a tokenizer location (1-based line and character column).
fn offset(sql: &str, at: Location) -> usize {
    let mut line = 1u64;
    let mut col = 1u64;
    for (i, c) in sql.char_indices() {
        if line == at.line && col == at.column {
            return i;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    sql.len()
}

fn is_word(t: &Token, w: &str) -> bool {
    matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
}

/// Splits `sql` into the DP options of a leading `SELECT WITH
/// DIFFERENTIAL_PRIVACY OPTIONS (…)` and the SQL without the clause; no
/// clause gives `None` and the SQL unchanged.
pub fn split(sql: &str) -> Result<(Option<DpOptions>, String)> {
    let tokens = match Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() {
        Ok(t) => t,
        // The planner reports the syntax error with its own message.
        Err(_) => return Ok((None, sql.to_string())),
    };
    let sig: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let mentions = sig
        .iter()
        .any(|t| is_word(&t.token, "DIFFERENTIAL_PRIVACY"));
    let leading = sig.len() > 3
        && matches!(&sig[0].token, Token::Word(w) if w.keyword == Keyword::SELECT)
        && is_word(&sig[1].token, "WITH")
        && is_word(&sig[2].token, "DIFFERENTIAL_PRIVACY");
    if !leading {
        if mentions {
            return Err(refuse(
                "dp_clause_position",
                "WITH DIFFERENTIAL_PRIVACY OPTIONS (…) must directly follow the outermost SELECT",
            ));
        }
        return Ok((None, sql.to_string()));
    }
    if !is_word(&sig[3].token, "OPTIONS")
        || !matches!(sig.get(4).map(|t| &t.token), Some(Token::LParen))
    {
        return Err(bad(
            "expected OPTIONS (epsilon = …, delta = …) after WITH DIFFERENTIAL_PRIVACY",
        ));
    }
    let mut i = 5;
    let mut opts = DpOptions::default();
    let (mut eps, mut delta) = (None, None);
    loop {
        let name = match sig.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
            Some(Token::RParen) if i == 5 => return Err(bad("OPTIONS is empty")),
            _ => return Err(bad("expected an option name in OPTIONS (…)")),
        };
        if !matches!(sig.get(i + 1).map(|t| &t.token), Some(Token::Eq)) {
            return Err(bad(format!("expected `=` after option `{name}`")));
        }
        i += 2;
        let negative = matches!(sig.get(i).map(|t| &t.token), Some(Token::Minus));
        if negative {
            i += 1;
        }
        let value = match sig.get(i).map(|t| &t.token) {
            Some(Token::Number(n, _)) => n
                .parse::<f64>()
                .map_err(|_| bad(format!("option `{name}` needs a number")))?,
            _ => return Err(bad(format!("option `{name}` needs a number"))),
        };
        let value = if negative { -value } else { value };
        let whole = |v: f64| -> Result<u32> {
            if v.fract() == 0.0 && (1.0..=1e6).contains(&v) {
                Ok(v as u32)
            } else {
                Err(bad(format!("option `{name}` must be a whole number ≥ 1")))
            }
        };
        match name.as_str() {
            "epsilon" if eps.is_none() => eps = Some(value),
            "delta" if delta.is_none() => delta = Some(value),
            "max_groups_contributed" if opts.max_groups_contributed.is_none() => {
                opts.max_groups_contributed = Some(whole(value)?)
            }
            "max_rows_per_group" if opts.max_rows_per_group.is_none() => {
                opts.max_rows_per_group = Some(whole(value)?)
            }
            "epsilon" | "delta" | "max_groups_contributed" | "max_rows_per_group" => {
                return Err(bad(format!("option `{name}` is given twice")));
            }
            _ => {
                return Err(bad(format!(
                    "unknown option `{name}` (epsilon, delta, max_groups_contributed, max_rows_per_group)"
                )));
            }
        }
        i += 1;
        match sig.get(i).map(|t| &t.token) {
            Some(Token::Comma) => i += 1,
            Some(Token::RParen) => break,
            _ => return Err(bad("expected `,` or `)` in OPTIONS (…)")),
        }
    }
    opts.epsilon = eps.ok_or_else(|| bad("OPTIONS needs epsilon"))?;
    opts.delta = delta.unwrap_or(0.0);
    // Keep `SELECT`, cut from `WITH` to the closing parenthesis.
    let from = offset(sql, sig[1].span.start);
    let to = offset(sql, sig[i].span.end);
    let rest = format!("{} {}", &sql[..from], &sql[to..]);
    Ok((Some(opts), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clause_is_cut_out() {
        let (o, rest) = split(
            "select with differential_privacy options (epsilon = 1.5, delta = 1e-6, max_groups_contributed = 2)\n  sex, count(*) from pums group by sex",
        )
        .unwrap();
        let o = o.unwrap();
        assert_eq!(o.epsilon, 1.5);
        assert_eq!(o.delta, 1e-6);
        assert_eq!(o.max_groups_contributed, Some(2));
        assert_eq!(
            rest.split_whitespace().collect::<Vec<_>>().join(" "),
            "select sex, count(*) from pums group by sex"
        );
    }

    #[test]
    fn no_clause_and_bad_clauses() {
        let (o, rest) = split("SELECT 'WITH DIFFERENTIAL_PRIVACY' AS x").unwrap();
        assert!(o.is_none());
        assert_eq!(rest, "SELECT 'WITH DIFFERENTIAL_PRIVACY' AS x");
        for (sql, code) in [
            (
                "SELECT x FROM (SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon=1) 1 AS x)",
                "dp_clause_position",
            ),
            (
                "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon=1, noise=2) 1",
                "dp_options_invalid",
            ),
            (
                "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (delta=1e-6) 1",
                "dp_options_invalid",
            ),
            (
                "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon=1, epsilon=2) 1",
                "dp_options_invalid",
            ),
            (
                "SELECT WITH DIFFERENTIAL_PRIVACY (epsilon=1) 1",
                "dp_options_invalid",
            ),
        ] {
            assert_eq!(split(sql).unwrap_err().code(), code, "{sql}");
        }
    }
}
