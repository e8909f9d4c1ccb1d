//! HTTP routes in API Gateway's HTTP API style: `GET /items/{id}`, `ANY /files/{proxy+}`,
//! `$default`; the most specific match wins.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

pub const DEFAULT_ROUTE: &str = "$default";
const METHODS: &[&str] = &[
    "ANY", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name+}`: one or more trailing segments.
    Greedy(String),
}

impl Segment {
    /// Literal before parameter before greedy parameter.
    fn rank(&self) -> u8 {
        match self {
            Self::Literal(_) => 2,
            Self::Param(_) => 1,
            Self::Greedy(_) => 0,
        }
    }

    /// Two routes that differ only in parameter names match the same requests.
    fn same_shape(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Literal(a), Self::Literal(b)) => a == b,
            (Self::Param(_), Self::Param(_)) | (Self::Greedy(_), Self::Greedy(_)) => true,
            _ => false,
        }
    }
}

/// A parsed route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    /// `None` for `$default`.
    method: Option<String>,
    segments: Vec<Segment>,
    text: String,
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl RouteKey {
    pub fn parse(key: &str) -> Result<Self, String> {
        if key == DEFAULT_ROUTE {
            return Ok(Self {
                method: None,
                segments: Vec::new(),
                text: key.to_string(),
            });
        }
        let Some((method, path)) = key.split_once(' ') else {
            return Err(format!(
                "route key '{key}' must be '$default' or a method and a path, like 'GET /items/{{id}}'"
            ));
        };
        if !METHODS.contains(&method) {
            return Err(format!(
                "'{method}' is not a route method ({})",
                METHODS.join(", ")
            ));
        }
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("the route path '{path}' must start with '/'"));
        };
        let mut segments = Vec::new();
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut names = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                return Err(format!("the route path '{path}' has an empty segment"));
            }
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(inner) => {
                    let (name, greedy) = match inner.strip_suffix('+') {
                        Some(name) => (name, true),
                        None => (inner, false),
                    };
                    if !is_param_name(name) {
                        return Err(format!("'{part}' is not a valid path parameter"));
                    }
                    if names.contains(&name) {
                        return Err(format!("the path parameter '{name}' appears twice"));
                    }
                    names.push(name);
                    if greedy {
                        if i + 1 != parts.len() {
                            return Err(format!(
                                "the greedy parameter '{part}' must be the last segment"
                            ));
                        }
                        Segment::Greedy(name.to_string())
                    } else {
                        Segment::Param(name.to_string())
                    }
                }
                None if part.contains(['{', '}', ' ']) => {
                    return Err(format!("'{part}' is not a valid path segment"));
                }
                None => Segment::Literal(part.to_string()),
            };
            segments.push(segment);
        }
        Ok(Self {
            method: Some(method.to_string()),
            segments,
            text: key.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether both keys would match exactly the same requests (only parameter names differ).
    pub fn conflicts_with(&self, other: &Self) -> bool {
        self.method == other.method
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| a.same_shape(b))
    }

    /// The path parameters if this route matches `method` and `path` (percent-encoded).
    fn matches(&self, method: &str, path: &str) -> Option<BTreeMap<String, String>> {
        let Some(route_method) = &self.method else {
            return Some(BTreeMap::new());
        };
        if route_method != "ANY" && route_method != method {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let mut params = BTreeMap::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(l) => {
                    if parts.get(i).map(|p| decode(p)) != Some(l.clone()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    params.insert(name.clone(), decode(part));
                }
                Segment::Greedy(name) => {
                    let tail = parts.get(i..).filter(|t| !t.is_empty())?;
                    params.insert(name.clone(), decode(&tail.join("/")));
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// Orders two routes that both match a request: greater is more specific.
    fn specificity(&self) -> (bool, Vec<u8>, bool) {
        (
            self.method.is_some(),
            self.segments.iter().map(Segment::rank).collect(),
            self.method.as_deref().is_some_and(|m| m != "ANY"),
        )
    }
}

/// A route and what it invokes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub key: RouteKey,
    /// `function` or `function:alias`.
    pub target: String,
}

/// The matched route and its path parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched<'a> {
    pub route: &'a Route,
    pub path_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Adds a route unless an existing one would match the same requests.
    pub fn add(&mut self, route: Route) -> Result<(), String> {
        if let Some(existing) = self
            .routes
            .iter()
            .find(|r| r.key.conflicts_with(&route.key))
        {
            return Err(if existing.key == route.key {
                format!("the route '{}' already exists", route.key.as_str())
            } else {
                format!(
                    "the route '{}' conflicts with the existing route '{}': they match the same requests",
                    route.key.as_str(),
                    existing.key.as_str()
                )
            });
        }
        self.routes.push(route);
        self.routes.sort_by(|a, b| a.key.text.cmp(&b.key.text));
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> Option<Route> {
        let i = self.routes.iter().position(|r| r.key.text == key)?;
        Some(self.routes.remove(i))
    }

    /// The most specific route matching the request.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        self.routes
            .iter()
            .filter_map(|route| {
                route
                    .key
                    .matches(method, path)
                    .map(|path_parameters| Matched {
                        route,
                        path_parameters,
                    })
            })
            .max_by(|a, b| a.route.key.specificity().cmp(&b.route.key.specificity()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: &[&str]) -> RouteTable {
        let mut t = RouteTable::default();
        for k in keys {
            t.add(Route {
                key: RouteKey::parse(k).unwrap(),
                target: k.to_string(),
            })
            .unwrap();
        }
        t
    }

    fn route(t: &RouteTable, method: &str, path: &str) -> Option<(String, Vec<(String, String)>)> {
        t.find(method, path).map(|m| {
            (
                m.route.key.as_str().to_string(),
                m.path_parameters.into_iter().collect(),
            )
        })
    }

    #[test]
    fn the_most_specific_route_wins() {
        let t = table(&[
            "GET /items",
            "GET /items/{id}",
            "GET /items/special",
            "ANY /items/{id}",
            "GET /files/{proxy+}",
            "ANY /{proxy+}",
            "$default",
            "GET /",
        ]);
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            route(&t, "GET", "/items"),
            Some(("GET /items".into(), vec![]))
        );
        assert_eq!(
            route(&t, "GET", "/items/42"),
            Some(("GET /items/{id}".into(), vec![p("id", "42")]))
        );
        assert_eq!(
            route(&t, "GET", "/items/special"),
            Some(("GET /items/special".into(), vec![]))
        );
        assert_eq!(
            route(&t, "DELETE", "/items/42"),
            Some(("ANY /items/{id}".into(), vec![p("id", "42")]))
        );
        assert_eq!(
            route(&t, "GET", "/files/a/b%20c.txt"),
            Some(("GET /files/{proxy+}".into(), vec![p("proxy", "a/b c.txt")]))
        );
        assert_eq!(
            route(&t, "POST", "/other/x"),
            Some(("ANY /{proxy+}".into(), vec![p("proxy", "other/x")]))
        );
        assert_eq!(route(&t, "GET", "/"), Some(("GET /".into(), vec![])));
        assert_eq!(route(&t, "POST", "/"), Some(("$default".into(), vec![])));
        let bare = table(&["GET /items/{id}"]);
        assert_eq!(route(&bare, "GET", "/items"), None);
        assert_eq!(route(&bare, "GET", "/items/1/2"), None);
        assert_eq!(route(&bare, "POST", "/items/1"), None);
    }

    #[test]
    fn conflicting_and_malformed_routes_are_refused() {
        let mut t = table(&["GET /items/{id}", "$default"]);
        for k in ["GET /items/{name}", "GET /items/{id}", "$default"] {
            let err = t
                .add(Route {
                    key: RouteKey::parse(k).unwrap(),
                    target: "f".into(),
                })
                .unwrap_err();
            assert!(
                err.contains("already exists") || err.contains("conflicts"),
                "{err}"
            );
        }
        for ok in [
            "POST /items/{id}",
            "ANY /items/{id}",
            "GET /items/{id}/parts",
        ] {
            t.add(Route {
                key: RouteKey::parse(ok).unwrap(),
                target: "f".into(),
            })
            .unwrap();
        }
        for bad in [
            "GET items",
            "FETCH /x",
            "GET /a//b",
            "GET /{proxy+}/x",
            "GET /{a}/{a}",
            "GET /{}",
            "/x",
            "GET /a{b}",
        ] {
            assert!(RouteKey::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
