//! `--format` templates: the subset of Go templates that `docker inspect -f` and
//! `docker ps --format` users write: `{{.Field.Sub}}`, `{{json .Field}}`, `{{lower .F}}`,
//! `{{upper .F}}`, literal text, and `\t`/`\n` escapes. Anything else is an error that says so.

use serde_json::Value;

/// A parsed template.
pub struct Template {
    parts: Vec<Part>,
}

enum Part {
    Text(String),
    Expr {
        func: Option<String>,
        path: Vec<String>,
    },
}

impl Template {
    /// Parses `s`.
    pub fn parse(s: &str) -> Result<Template, String> {
        let s = s.replace("\\t", "\t").replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let j = after
                .find("}}")
                .ok_or_else(|| format!("template {s:?}: '{{{{' without '}}}}'"))?;
            let expr = after[..j]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            let words: Vec<&str> = expr.split_whitespace().collect();
            let (func, path) = match words.as_slice() {
                [p] => (None, *p),
                [f, p] if matches!(*f, "json" | "lower" | "upper") => (Some(f.to_string()), *p),
                _ => {
                    return Err(format!(
                        "template {s:?}: {{{{{expr}}}}} is not supported (use {{{{.Field}}}}, {{{{json .Field}}}}, {{{{lower .Field}}}})"
                    ))
                }
            };
            if !path.starts_with('.') {
                return Err(format!(
                    "template {s:?}: {path:?} must be a field path such as .State.ExitCode"
                ));
            }
            let path = path
                .split('.')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            parts.push(Part::Expr { func, path });
            rest = &after[j + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders for one value.
    pub fn render(&self, v: &Value) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr { func, path } => {
                    let mut cur = Some(v);
                    for k in path {
                        cur = cur.and_then(|c| match c {
                            Value::Object(m) => m.get(k).or_else(|| {
                                m.iter()
                                    .find(|(kk, _)| kk.eq_ignore_ascii_case(k))
                                    .map(|(_, vv)| vv)
                            }),
                            _ => None,
                        });
                    }
                    let s = match (func.as_deref(), cur) {
                        (Some("json"), Some(x)) => x.to_string(),
                        (Some("json"), None) => "null".into(),
                        (_, None) | (_, Some(Value::Null)) => "<no value>".into(),
                        (_, Some(Value::String(s))) => s.clone(),
                        (_, Some(x)) => x.to_string(),
                    };
                    match func.as_deref() {
                        Some("lower") => out.push_str(&s.to_lowercase()),
                        Some("upper") => out.push_str(&s.to_uppercase()),
                        _ => out.push_str(&s),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_json() {
        let v = serde_json::json!({"State": {"ExitCode": 101, "OOMKilled": false}, "Name": "x", "Config": {"Env": ["A=1"]}});
        let t = Template::parse(
            "{{.State.ExitCode}} {{.Name}}\\t{{json .Config.Env}} {{.state.oomkilled}}",
        )
        .unwrap();
        assert_eq!(t.render(&v), "101 x\t[\"A=1\"] false");
        assert!(Template::parse("{{range .X}}").is_err());
        assert!(Template::parse("{{.X").is_err());
        assert_eq!(
            Template::parse("{{.Nope}}").unwrap().render(&v),
            "<no value>"
        );
    }
}
