//! The console's templates, compiled into the binary (their sources are
//! embedded; the environment is built once). minijinja escapes every value
//! in `.html` templates; a unit test renders each template so a syntax error
//! fails the build's tests, not a visitor's page.

use std::sync::OnceLock;

use minijinja::{Environment, State, Value};

use super::assets;
use super::i18n::{self, Lang};

/// Every template, by name.
pub const SOURCES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("signin.html", include_str!("templates/signin.html")),
    ("catalog.html", include_str!("templates/catalog.html")),
    ("dataset.html", include_str!("templates/dataset.html")),
    ("grants.html", include_str!("templates/grants.html")),
    ("workbench.html", include_str!("templates/workbench.html")),
    ("job.html", include_str!("templates/job.html")),
    ("job_state.html", include_str!("templates/job_state.html")),
    ("reviews.html", include_str!("templates/reviews.html")),
    ("review.html", include_str!("templates/review.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

fn lang_of(state: &State) -> Lang {
    state
        .lookup("lang")
        .and_then(|v| v.as_str().map(Lang::from_code))
        .unwrap_or(Lang::ZhCn)
}

pub fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in SOURCES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env.add_function("t", |state: &State, key: &str| {
            i18n::tr(lang_of(state), key)
        });
        env.add_function("asset", |name: &str| assets::url(name));
        env.add_function("sri", |name: &str| assets::integrity(name));
        env.add_filter("cst", |state: &State, v: Value| {
            v.as_str()
                .map(|s| i18n::cst(lang_of(state), s))
                .unwrap_or_default()
        });
        env.add_filter("truncate", |s: &str, n: usize| {
            if s.chars().count() <= n {
                s.to_string()
            } else {
                let cut: String = s.chars().take(n).collect();
                format!("{cut}…")
            }
        });
        // A row's cells as `column = value` pairs.
        env.add_filter("pairs", |v: Value| -> String {
            let Ok(keys) = v.try_iter() else {
                return v.to_string();
            };
            keys.map(|k| {
                let val = v.get_item(&k).unwrap_or_default();
                format!("{k} = {val}")
            })
            .collect::<Vec<_>>()
            .join("\n")
        });
        env.add_filter(
            "num",
            |state: &State, v: Value, decimals: Option<usize>| match f64::try_from(v.clone()) {
                Ok(f) => i18n::number(lang_of(state), f, decimals.unwrap_or(0)),
                Err(_) => v.to_string(),
            },
        );
        env
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each template parses and renders with an empty context in both
    /// languages (the pages fill in the rest).
    #[test]
    fn every_template_renders() {
        let env = environment();
        for (name, _) in SOURCES {
            for lang in ["zh-CN", "en"] {
                let t = env.get_template(name).unwrap();
                t.render(minijinja::context! { lang => lang })
                    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            }
        }
    }

    #[test]
    fn values_are_escaped() {
        let env = environment();
        let html = env
            .get_template("error.html")
            .unwrap()
            .render(minijinja::context! { lang => "en", detail => "<script>x</script>" })
            .unwrap();
        assert!(!html.contains("<script>x"), "{html}");
        assert!(html.contains("&lt;script&gt;x"), "{html}");
    }
}
