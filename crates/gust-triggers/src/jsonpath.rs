//! The JSONPath subset EventBridge's `InputPath` uses: `$`, `.member`, `['member']`, `[n]`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Member(String),
    Index(usize),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    pub fn parse(path: &str) -> Result<Self, String> {
        let Some(mut rest) = path.strip_prefix('$') else {
            return Err(format!("the path '{path}' must start with '$'"));
        };
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() {
                    return Err(format!("the path '{path}' has an empty member name"));
                }
                steps.push(Step::Member(name.to_string()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after
                    .find(']')
                    .ok_or_else(|| format!("the path '{path}' has an unclosed '['"))?;
                let inner = &after[..end];
                let quoted = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                match quoted {
                    Some(name) => steps.push(Step::Member(name.to_string())),
                    None => steps.push(Step::Index(inner.parse().map_err(|_| {
                        format!("'[{inner}]' in '{path}' is neither an index nor a quoted name")
                    })?)),
                }
                rest = &after[end + 1..];
            } else {
                return Err(format!("the path '{path}' is not a JSONPath"));
            }
        }
        Ok(Self(steps))
    }

    /// The selected part of `value`, if it exists.
    pub fn select<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(value, |v, step| match step {
            Step::Member(name) => v.get(name),
            Step::Index(i) => v.get(i),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_members_and_indices() {
        let v = json!({"detail": {"a": [1, {"b": "x"}]}, "detail-type": "Scheduled Event"});
        let get = |p: &str| JsonPath::parse(p).unwrap().select(&v).cloned();
        assert_eq!(get("$"), Some(v.clone()));
        assert_eq!(get("$.detail.a[1].b"), Some(json!("x")));
        assert_eq!(get("$['detail-type']"), Some(json!("Scheduled Event")));
        assert_eq!(get("$.missing"), None);
        for bad in ["detail", "$.", "$[x]", "$[0"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}
