//! Function names as clients send them (name, `name:qualifier`, full ARN, partial ARN) and the
//! ARNs Gust answers with.

use crate::error::{LambdaError, violation};
use crate::function::LATEST;

/// Model pattern of `FunctionName` (most mutating operations), as AWS quotes it in errors.
pub const FUNCTION_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?";
/// Model pattern of `NamespacedFunctionName` (Get*, Invoke, Delete).
pub const NAMESPACED_FUNCTION_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?";
/// Model pattern of the `Qualifier` query member beside a `FunctionName` (plain shape).
pub const QUALIFIER_PATTERN: &str = r"(|[a-zA-Z0-9$_-]+)";
/// Model pattern of the `Qualifier` query member beside a `NamespacedFunctionName`
/// (GetFunction, DeleteFunction, Invoke, …).
pub const NAMESPACED_QUALIFIER_PATTERN: &str = r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+";
/// Longest `Qualifier` query member.
pub const QUALIFIER_MAX: usize = 128;

/// Which of the model's two function-name shapes an operation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameShape {
    /// `FunctionName`: up to 140 characters.
    Plain,
    /// `NamespacedFunctionName`: up to 256 characters, `.` allowed in the name.
    Namespaced,
}

impl NameShape {
    fn max_len(self) -> usize {
        match self {
            Self::Plain => 140,
            Self::Namespaced => 256,
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Self::Plain => FUNCTION_NAME_PATTERN,
            Self::Namespaced => NAMESPACED_FUNCTION_NAME_PATTERN,
        }
    }

    fn qualifier_pattern(self) -> &'static str {
        match self {
            Self::Plain => QUALIFIER_PATTERN,
            Self::Namespaced => NAMESPACED_QUALIFIER_PATTERN,
        }
    }

    /// Whether a `Qualifier` query member matches this shape's qualifier pattern.
    fn qualifier_matches(self, q: &str) -> bool {
        let chars = q.chars().all(is_qualifier_char);
        match self {
            Self::Plain => chars,
            Self::Namespaced => {
                q == "$LATEST" || q == "$LATEST.PUBLISHED" || (!q.is_empty() && chars)
            }
        }
    }
}

/// A reference to a function as a client wrote it, already split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
}

impl FunctionRef {
    /// Parses the `FunctionName` member or path segment (already percent-decoded).
    pub fn parse(input: &str, shape: NameShape) -> Result<Self, LambdaError> {
        Self::parse_qualified(input, shape, None)
    }

    /// Parses the `FunctionName` member together with the `Qualifier` query member. Like
    /// Lambda's front end, it reports every violated constraint of both members in one
    /// `ValidationException`, and only then compares the two qualifiers.
    pub fn parse_qualified(
        input: &str,
        shape: NameShape,
        query: Option<&str>,
    ) -> Result<Self, LambdaError> {
        let mut violations = Vec::new();
        let query = query.filter(|q| !q.is_empty());
        if let Some(q) = query {
            if q.chars().count() > QUALIFIER_MAX {
                violations.push(violation(
                    q,
                    "qualifier",
                    &format!("Member must have length less than or equal to {QUALIFIER_MAX}"),
                ));
            }
            if !shape.qualifier_matches(q) {
                violations.push(violation(
                    q,
                    "qualifier",
                    &format!(
                        "Member must satisfy regular expression pattern: {}",
                        shape.qualifier_pattern()
                    ),
                ));
            }
        }
        if input.is_empty() {
            violations.push(violation(
                input,
                "functionName",
                "Member must have length greater than or equal to 1",
            ));
        } else if input.chars().count() > shape.max_len() {
            violations.push(violation(
                input,
                "functionName",
                &format!(
                    "Member must have length less than or equal to {}",
                    shape.max_len()
                ),
            ));
        }
        let parsed = parse_parts(input, shape);
        if parsed.is_none() && !input.is_empty() {
            violations.push(violation(
                input,
                "functionName",
                &format!(
                    "Member must satisfy regular expression pattern: {}",
                    shape.pattern()
                ),
            ));
        }
        match parsed {
            Some(parsed) if violations.is_empty() => parsed.with_query_qualifier(query),
            _ => Err(LambdaError::validation(&violations)),
        }
    }

    /// Combines the qualifier embedded in the name with a valid `Qualifier` query member.
    fn with_query_qualifier(mut self, query: Option<&str>) -> Result<Self, LambdaError> {
        let Some(query) = query else {
            return Ok(self);
        };
        match &self.qualifier {
            Some(embedded) if embedded != query => Err(LambdaError::invalid_parameter(
                "The derived qualifier from the function name does not match the specified qualifier.",
            )),
            _ => {
                self.qualifier = Some(query.to_string());
                Ok(self)
            }
        }
    }

    /// Refuses references to another region or account: they name functions Gust cannot reach.
    pub fn check_scope(&self, arns: &Arns) -> Result<(), LambdaError> {
        if let Some(region) = &self.region
            && region != &arns.region
        {
            return Err(LambdaError::not_found(format!(
                "Functions from '{region}' are not reachable in this region ('{}')",
                arns.region
            )));
        }
        if let Some(account) = &self.account
            && account != &arns.account
        {
            return Err(LambdaError::access_denied());
        }
        Ok(())
    }

    /// The ARN this reference names, qualified when it carries a qualifier.
    pub fn arn(&self, arns: &Arns) -> String {
        match &self.qualifier {
            Some(q) => arns.qualified(&self.name, q),
            None => arns.function(&self.name),
        }
    }

    /// The version or alias this reference selects (`$LATEST` when unqualified).
    pub fn qualifier_or_latest(&self) -> &str {
        self.qualifier.as_deref().unwrap_or(LATEST)
    }
}

fn is_name_char(c: char, shape: NameShape) -> bool {
    c.is_ascii_alphanumeric()
        || c == '-'
        || c == '_'
        || (shape == NameShape::Namespaced && c == '.')
}

fn is_qualifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '$'
}

/// `(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}`: a region name.
pub fn is_region(s: &str) -> bool {
    // [a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d, optionally prefixed by "eusc-".
    let s = s.strip_prefix("eusc-").unwrap_or(s);
    let parts: Vec<&str> = s.split('-').collect();
    let lower = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let digit = |p: &str| p.len() == 1 && p.bytes().all(|b| b.is_ascii_digit());
    match parts.as_slice() {
        [cc, area, n] => cc.len() == 2 && lower(cc) && lower(area) && digit(n),
        [cc, sovereign, area, n] => {
            cc.len() == 2
                && lower(cc)
                && (*sovereign == "gov"
                    || (sovereign.starts_with("iso") && sovereign.len() <= 4 && lower(sovereign)))
                && lower(area)
                && digit(n)
        }
        _ => false,
    }
}

/// `(aws[a-zA-Z-]*)?`: the partition of an ARN (`aws`, `aws-cn`, `aws-us-gov`, or empty).
pub fn is_partition(s: &str) -> bool {
    s.is_empty()
        || s.strip_prefix("aws")
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_alphabetic() || c == '-'))
}

/// Twelve digits.
pub fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_parts(input: &str, shape: NameShape) -> Option<FunctionRef> {
    let parts: Vec<&str> = input.split(':').collect();
    let mut region = None;
    let mut account = None;
    let rest: &[&str] = if parts[0] == "arn" {
        // arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]
        let [_, partition, service, reg, acct, kind, rest @ ..] = parts.as_slice() else {
            return None;
        };
        let partition_ok = partition.is_empty()
            || (partition.starts_with("aws")
                && partition[3..]
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '-'));
        if !partition_ok || *service != "lambda" || !is_region(reg) || !is_account(acct) {
            return None;
        }
        region = Some(reg.to_string());
        account = Some(acct.to_string());
        // The model's pattern makes `function:` optional: `…:123456789012:function` names a
        // function called `function`, and `…:123456789012:f:1` is `f`, version 1.
        if *kind == "function" && !rest.is_empty() {
            rest
        } else {
            &parts[5..]
        }
    } else if parts.len() >= 3 && is_account(parts[0]) && parts[1] == "function" {
        account = Some(parts[0].to_string());
        &parts[2..]
    } else {
        &parts[..]
    };
    let (name, qualifier) = match rest {
        [name] => (*name, None),
        [name, qualifier] => (*name, Some(*qualifier)),
        _ => return None,
    };
    if name.is_empty() || !name.chars().all(|c| is_name_char(c, shape)) {
        return None;
    }
    if let Some(q) = qualifier {
        let valid = q == LATEST
            || (shape == NameShape::Namespaced && q == "$LATEST.PUBLISHED")
            || (!q.is_empty()
                && q.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        if !valid {
            return None;
        }
    }
    Some(FunctionRef {
        name: name.to_string(),
        qualifier: qualifier.map(str::to_string),
        region,
        account,
    })
}

/// Builds the ARNs of one Gust server (one region, one account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arns {
    pub region: String,
    pub account: String,
}

impl Arns {
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            account: account.into(),
        }
    }

    pub fn function(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account
        )
    }

    pub fn qualified(&self, name: &str, qualifier: &str) -> String {
        format!("{}:{qualifier}", self.function(name))
    }
}

/// `[a-zA-Z0-9-_]{1,64}`: the plain name CreateFunction stores.
pub fn is_valid_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= crate::limits::FUNCTION_NAME_MAX
        && name.chars().all(|c| is_name_char(c, NameShape::Plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<FunctionRef> {
        FunctionRef::parse(s, NameShape::Namespaced).ok()
    }

    #[test]
    fn accepts_all_four_forms() {
        let plain = parse("my-fn").unwrap();
        assert_eq!((plain.name.as_str(), plain.qualifier), ("my-fn", None));

        let qualified = parse("my-fn:$LATEST").unwrap();
        assert_eq!(qualified.qualifier.as_deref(), Some("$LATEST"));

        let full = parse("arn:aws:lambda:eu-west-1:123456789012:function:my_fn:prod").unwrap();
        assert_eq!(full.name, "my_fn");
        assert_eq!(full.qualifier.as_deref(), Some("prod"));
        assert_eq!(full.region.as_deref(), Some("eu-west-1"));
        assert_eq!(full.account.as_deref(), Some("123456789012"));

        let partial = parse("123456789012:function:my-fn:3").unwrap();
        assert_eq!(partial.name, "my-fn");
        assert_eq!(partial.qualifier.as_deref(), Some("3"));
        assert_eq!(partial.region, None);

        assert!(parse("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f").is_some());
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            "a b",
            "a:b:c",
            "invalid:function:name",
            "arn:aws:lambda:us-east-1:12345:function:f",
            "arn:aws:s3:us-east-1:123456789012:function:f",
            "f:bad?q",
            "f:",
        ] {
            assert!(parse(bad).is_none(), "{bad} should be rejected");
        }
        let err = FunctionRef::parse("invalid:function:name", NameShape::Plain).unwrap_err();
        assert!(err.message.starts_with("1 validation error detected: Value 'invalid:function:name' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: (arn:"));
        let long = "a".repeat(141);
        let err = FunctionRef::parse(&long, NameShape::Plain).unwrap_err();
        assert!(
            err.message
                .ends_with("Member must have length less than or equal to 140")
        );
    }

    #[test]
    fn query_qualifier_must_agree_with_the_name() {
        let qualified = |name: &str, q: &str| {
            FunctionRef::parse_qualified(name, NameShape::Namespaced, Some(q))
        };
        assert_eq!(
            qualified("f:1", "1").unwrap().qualifier.as_deref(),
            Some("1")
        );
        let err = qualified("f:1", "2").unwrap_err();
        assert_eq!(
            err.message,
            "The derived qualifier from the function name does not match the specified qualifier."
        );
        let q = qualified("f", "$LATEST").unwrap();
        assert_eq!(q.qualifier.as_deref(), Some("$LATEST"));
    }

    #[test]
    fn an_arn_without_function_segment_names_its_last_part() {
        let r = parse("arn:aws:lambda:us-east-1:123456789012:function").unwrap();
        assert_eq!((r.name.as_str(), r.qualifier), ("function", None));
        let r = parse("arn:aws:lambda:us-east-1:123456789012:f:1").unwrap();
        assert_eq!((r.name.as_str(), r.qualifier.as_deref()), ("f", Some("1")));
    }

    #[test]
    fn every_violation_of_name_and_qualifier_is_reported() {
        let q = "a".repeat(129);
        let err = FunctionRef::parse_qualified("f", NameShape::Namespaced, Some(&q)).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128"
            )
        );
        let err =
            FunctionRef::parse_qualified("f", NameShape::Namespaced, Some("invalid!")).unwrap_err();
        assert_eq!(
            err.message,
            r"1 validation error detected: Value 'invalid!' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: \$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+"
        );
        let name = format!(
            "arn:aws:lambda:invalid-region:123456789012:function:f{}",
            "a".repeat(170)
        );
        let err = FunctionRef::parse_qualified(&name, NameShape::Plain, None).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "2 validation errors detected: Value '{name}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 140; Value '{name}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {FUNCTION_NAME_PATTERN}"
            )
        );
        let err = FunctionRef::parse_qualified(&name, NameShape::Namespaced, Some(&q)).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "2 validation errors detected: Value '{q}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128; Value '{name}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {NAMESPACED_FUNCTION_NAME_PATTERN}"
            )
        );
    }

    #[test]
    fn other_regions_are_unreachable() {
        let arns = Arns::new("us-east-1", "123456789012");
        let r = parse("arn:aws:lambda:ap-southeast-1:123456789012:function:f").unwrap();
        assert_eq!(
            r.check_scope(&arns).unwrap_err().message,
            "Functions from 'ap-southeast-1' are not reachable in this region ('us-east-1')"
        );
        assert!(parse("f").unwrap().check_scope(&arns).is_ok());
    }

    #[test]
    fn arns_are_formatted_like_aws() {
        let arns = Arns::new("us-east-1", "123456789012");
        assert_eq!(
            arns.qualified("f", "$LATEST"),
            "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST"
        );
    }
}
