//! Function names as clients send them (name, `name:qualifier`, full ARN, partial ARN) and the
//! ARNs Gust answers with.

use crate::error::{LambdaError, violation};
use crate::function::LATEST;

/// Model pattern of `FunctionName` (most mutating operations), as AWS quotes it in errors.
pub const FUNCTION_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?";
/// Model pattern of `NamespacedFunctionName` (Get*, Invoke, Delete).
pub const NAMESPACED_FUNCTION_NAME_PATTERN: &str = r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?";
/// Model pattern of the `Qualifier` query member.
pub const QUALIFIER_PATTERN: &str = r"(|[a-zA-Z0-9$_-]+)";

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
        if input.is_empty() || input.chars().count() > shape.max_len() {
            let constraint = if input.is_empty() {
                "Member must have length greater than or equal to 1".to_string()
            } else {
                format!(
                    "Member must have length less than or equal to {}",
                    shape.max_len()
                )
            };
            return Err(LambdaError::validation(&[violation(
                input,
                "functionName",
                &constraint,
            )]));
        }
        parse_parts(input, shape).ok_or_else(|| {
            LambdaError::validation(&[violation(
                input,
                "functionName",
                &format!(
                    "Member must satisfy regular expression pattern: {}",
                    shape.pattern()
                ),
            )])
        })
    }

    /// Combines the qualifier embedded in the name with the `Qualifier` query member.
    pub fn with_query_qualifier(mut self, query: Option<&str>) -> Result<Self, LambdaError> {
        let Some(query) = query else {
            return Ok(self);
        };
        if query.is_empty() {
            return Ok(self);
        }
        if query.len() > 128 || !query.chars().all(is_qualifier_char) {
            return Err(LambdaError::validation(&[violation(
                query,
                "qualifier",
                &format!("Member must satisfy regular expression pattern: {QUALIFIER_PATTERN}"),
            )]));
        }
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

fn is_region(s: &str) -> bool {
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
        if *kind != "function" {
            return None;
        }
        region = Some(reg.to_string());
        account = Some(acct.to_string());
        rest
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
            "arn:aws:lambda:us-east-1:123456789012:layer:f",
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
        let r = parse("f:1").unwrap();
        assert_eq!(
            r.clone()
                .with_query_qualifier(Some("1"))
                .unwrap()
                .qualifier
                .as_deref(),
            Some("1")
        );
        let err = r.with_query_qualifier(Some("2")).unwrap_err();
        assert_eq!(
            err.message,
            "The derived qualifier from the function name does not match the specified qualifier."
        );
        let q = parse("f")
            .unwrap()
            .with_query_qualifier(Some("$LATEST"))
            .unwrap();
        assert_eq!(q.qualifier.as_deref(), Some("$LATEST"));
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
