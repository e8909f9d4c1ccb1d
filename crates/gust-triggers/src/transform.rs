//! EventBridge's `InputTransformer`: values picked out of the event with JSONPath
//! (`InputPathsMap`) and placed in a template (`InputTemplate`) at `<name>` placeholders.
//!
//! A placeholder inside a quoted string takes the value as text (a string without its quotes);
//! elsewhere it takes the value as JSON. A path that selects nothing gives `null` (empty text
//! inside a string). The predefined `<aws.events.rule-arn>`, `<aws.events.rule-name>`,
//! `<aws.events.event.ingestion-time>` and `<aws.events.event>` / `<aws.events.event.json>`
//! are always there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jsonpath::JsonPath;

/// Most variables an `InputPathsMap` may define (EventBridge's limit).
const MAX_PATHS: usize = 100;
const TEMPLATE_MAX: usize = 8192;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InputTransformer {
    #[serde(default)]
    pub input_paths_map: BTreeMap<String, String>,
    #[serde(default)]
    pub input_template: Option<String>,
}

impl InputTransformer {
    /// Checks the paths and the template; the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let Some(template) = &self.input_template else {
            return Err("InputTemplate is required".into());
        };
        if template.len() > TEMPLATE_MAX {
            return Err(format!(
                "InputTemplate is longer than {TEMPLATE_MAX} characters"
            ));
        }
        if self.input_paths_map.len() > MAX_PATHS {
            return Err(format!("InputPathsMap has more than {MAX_PATHS} entries"));
        }
        for (name, path) in &self.input_paths_map {
            if name.starts_with("aws.events.") {
                return Err(format!("'{name}' is a reserved variable name"));
            }
            JsonPath::parse(path).map_err(|e| format!("InputPathsMap '{name}': {e}"))?;
        }
        Ok(())
    }

    /// The target's input for `event`.
    pub fn apply(&self, event: &Value, rule_arn: &str, rule_name: &str) -> String {
        let mut values: BTreeMap<&str, Option<Value>> = BTreeMap::new();
        for (name, path) in &self.input_paths_map {
            let selected = JsonPath::parse(path)
                .ok()
                .and_then(|p| p.select(event).cloned());
            values.insert(name.as_str(), selected);
        }
        values.insert("aws.events.rule-arn", Some(rule_arn.into()));
        values.insert("aws.events.rule-name", Some(rule_name.into()));
        values.insert(
            "aws.events.event.ingestion-time",
            event.get("time").cloned(),
        );
        values.insert("aws.events.event", Some(event.clone()));
        values.insert("aws.events.event.json", Some(event.clone()));
        fill(self.input_template.as_deref().unwrap_or_default(), &values)
    }
}

/// Replaces each `<name>` of `template` that names a value.
fn fill(template: &str, values: &BTreeMap<&str, Option<Value>>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
            && let Some(value) = values.get(&rest[1..end])
        {
            match (value, in_string) {
                (Some(Value::String(s)), true) => out.push_str(&escape_in_string(s)),
                (Some(v), true) => out.push_str(&escape_in_string(&v.to_string())),
                (None, true) => {}
                (Some(v), false) => out.push_str(&v.to_string()),
                (None, false) => out.push_str("null"),
            }
            rest = &rest[end + 1..];
            continue;
        }
        match c {
            '\\' if in_string && !escaped => escaped = true,
            '"' if !escaped => {
                in_string = !in_string;
                escaped = false;
            }
            _ => escaped = false,
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Text placed inside a JSON string: quotes, backslashes and control characters escaped.
fn escape_in_string(text: &str) -> String {
    let quoted = Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn transformer(paths: &[(&str, &str)], template: &str) -> InputTransformer {
        InputTransformer {
            input_paths_map: paths
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            input_template: Some(template.into()),
        }
    }

    #[test]
    fn values_go_in_as_json_or_as_text() {
        let event = json!({"time": "2030-01-01T00:01:00Z", "detail": {"n": 3, "s": "a \"b\""}});
        let t = transformer(
            &[
                ("n", "$.detail.n"),
                ("s", "$.detail.s"),
                ("gone", "$.nothing"),
            ],
            r#"{"count": <n>, "text": <s>, "line": "<s> x<n> at <aws.events.event.ingestion-time>", "missing": <gone>, "rule": "<aws.events.rule-name>"}"#,
        );
        t.check().unwrap();
        let out: Value = serde_json::from_str(&t.apply(&event, "arn:r", "r")).unwrap();
        assert_eq!(
            out,
            json!({"count": 3, "text": "a \"b\"", "line": "a \"b\" x3 at 2030-01-01T00:01:00Z", "missing": null, "rule": "r"})
        );
        let whole = transformer(&[], "<aws.events.event>");
        assert_eq!(
            serde_json::from_str::<Value>(&whole.apply(&event, "a", "r")).unwrap(),
            event
        );
        // Unknown placeholders and plain angle brackets stay as they are.
        let plain = transformer(&[], r#""<b>bold</b> <unknown>""#);
        assert_eq!(plain.apply(&event, "a", "r"), r#""<b>bold</b> <unknown>""#);
    }

    #[test]
    fn bad_transformers_are_refused() {
        assert!(transformer(&[("x", "detail")], "<x>").check().is_err());
        assert!(
            transformer(&[("aws.events.rule-arn", "$")], "<x>")
                .check()
                .is_err()
        );
        let no_template = InputTransformer::default();
        assert!(no_template.check().is_err());
    }
}
