//! Lambda's runtime identifiers and what Gust does with each.

/// Every value of the `Runtime` enum in Lambda's API model.
pub const MODEL_RUNTIMES: &[&str] = &[
    "nodejs",
    "nodejs4.3",
    "nodejs6.10",
    "nodejs8.10",
    "nodejs10.x",
    "nodejs12.x",
    "nodejs14.x",
    "nodejs16.x",
    "java8",
    "java8.al2",
    "java11",
    "python2.7",
    "python3.6",
    "python3.7",
    "python3.8",
    "python3.9",
    "dotnetcore1.0",
    "dotnetcore2.0",
    "dotnetcore2.1",
    "dotnetcore3.1",
    "dotnet6",
    "dotnet8",
    "nodejs4.3-edge",
    "go1.x",
    "ruby2.5",
    "ruby2.7",
    "provided",
    "provided.al2",
    "nodejs18.x",
    "python3.10",
    "java17",
    "ruby3.2",
    "ruby3.3",
    "ruby3.4",
    "python3.11",
    "nodejs20.x",
    "provided.al2023",
    "python3.12",
    "java21",
    "python3.13",
    "nodejs22.x",
    "nodejs24.x",
    "python3.14",
    "java25",
    "dotnet10",
    "ruby4.0",
];

/// The runtimes AWS currently accepts for new functions, in the order its error message lists
/// them.
pub const AWS_ACCEPTED_RUNTIMES: &[&str] = &[
    "nodejs20.x",
    "python3.14",
    "provided.al2023",
    "python3.12",
    "python3.13",
    "nodejs24.x",
    "nodejs22.x",
    "java25",
    "python3.10",
    "python3.11",
    "java21",
    "ruby3.3",
    "ruby3.4",
    "ruby3.2",
    "python3.8",
    "python3.9",
    "java17",
    "nodejs16.x",
    "dotnet10",
    "dotnet8",
    "java11",
    "dotnet6",
    "nodejs18.x",
    "provided.al2",
    "java8.al2",
];

/// The language family of a runtime Gust runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Python,
    Node,
    /// `provided*`: the function's own `bootstrap` executable.
    Custom,
}

/// A runtime Gust runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeId {
    pub id: &'static str,
    pub family: Family,
    /// Language version: `3.12` for python3.12, `20` for nodejs20.x; empty for custom runtimes.
    pub version: &'static str,
}

const fn rt(id: &'static str, family: Family, version: &'static str) -> RuntimeId {
    RuntimeId {
        id,
        family,
        version,
    }
}

/// The runtimes Gust runs, in display order.
pub const GUST_RUNTIMES: &[RuntimeId] = &[
    rt("python3.9", Family::Python, "3.9"),
    rt("python3.10", Family::Python, "3.10"),
    rt("python3.11", Family::Python, "3.11"),
    rt("python3.12", Family::Python, "3.12"),
    rt("python3.13", Family::Python, "3.13"),
    rt("python3.14", Family::Python, "3.14"),
    rt("nodejs18.x", Family::Node, "18"),
    rt("nodejs20.x", Family::Node, "20"),
    rt("nodejs22.x", Family::Node, "22"),
    rt("nodejs24.x", Family::Node, "24"),
    rt("provided", Family::Custom, ""),
    rt("provided.al2", Family::Custom, ""),
    rt("provided.al2023", Family::Custom, ""),
];

pub fn gust_runtime(id: &str) -> Option<RuntimeId> {
    GUST_RUNTIMES.iter().copied().find(|r| r.id == id)
}

/// How a requested runtime id stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Gust runs it.
    Supported(RuntimeId),
    /// A runtime AWS runs that Gust does not (yet): Java, .NET, Ruby.
    NotInGust,
    /// A runtime AWS no longer accepts for new functions.
    Deprecated,
    /// Not a Lambda runtime at all.
    Unknown,
}

/// Whether `id` may be given to a new or updated function: AWS's verdict first (a runtime it
/// no longer accepts, such as `provided`, is refused even though Gust could run it), then
/// whether Gust runs it.
pub fn support(id: &str) -> Support {
    if !AWS_ACCEPTED_RUNTIMES.contains(&id) {
        if MODEL_RUNTIMES.contains(&id) {
            Support::Deprecated
        } else {
            Support::Unknown
        }
    } else if let Some(r) = gust_runtime(id) {
        Support::Supported(r)
    } else {
        Support::NotInGust
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_runtime_ids() {
        assert!(
            matches!(support("python3.12"), Support::Supported(r) if r.family == Family::Python)
        );
        assert!(
            matches!(support("provided.al2023"), Support::Supported(r) if r.family == Family::Custom)
        );
        assert_eq!(support("java21"), Support::NotInGust);
        assert_eq!(support("python2.7"), Support::Deprecated);
        // Gust runs it for functions made before, but AWS refuses it for new ones.
        assert_eq!(support("provided"), Support::Deprecated);
        assert_eq!(support("PYTHON3.9"), Support::Unknown);
    }
}
