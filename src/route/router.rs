//! Route table: method and path pattern to a value (a handler).
//!
//! Patterns are `/`-separated segments: literals, `{name}` parameters (one
//! non-empty segment) and a final `{*name}` tail that takes the rest of the
//! path. Literals win over parameters, parameters over tails; lookup
//! backtracks, so `/users/me` and `/users/{id}/posts` coexist. Lookup
//! allocates nothing: matched parameters go into a caller's fixed array.

use std::fmt;

use crate::http::parse::Method;

/// Most parameters one pattern may have.
pub const MAX_PARAMS: usize = 8;

/// Why a pattern cannot be added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError(String);

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RouteError {}

/// The answer of a lookup.
#[derive(Debug)]
pub enum Lookup<'r, T> {
    /// A route matched; this many entries of the params array are set.
    Found(&'r T, usize),
    /// The path exists but not for this method; the methods it has.
    MethodNotAllowed(&'r [(Method, T)]),
    /// No route has this path.
    NotFound,
}

/// A route table.
pub struct Router<T> {
    root: Node<T>,
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

/// The values routed for one path, by method.
type Methods<T> = Vec<(Method, T)>;

struct Node<T> {
    literals: Vec<(Box<str>, Node<T>)>,
    param: Option<(Box<str>, Box<Node<T>>)>,
    tail: Option<(Box<str>, Methods<T>)>,
    methods: Methods<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            literals: Vec::new(),
            param: None,
            tail: None,
            methods: Vec::new(),
        }
    }
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
        }
    }
}

impl<T> Router<T> {
    /// Calls `f` with every value in the table.
    pub(crate) fn for_each_mut(&mut self, f: &mut impl FnMut(&mut T)) {
        fn walk<T>(node: &mut Node<T>, f: &mut impl FnMut(&mut T)) {
            for (_, value) in &mut node.methods {
                f(value);
            }
            if let Some((_, methods)) = &mut node.tail {
                for (_, value) in methods {
                    f(value);
                }
            }
            if let Some((_, child)) = &mut node.param {
                walk(child, f);
            }
            for (_, child) in &mut node.literals {
                walk(child, f);
            }
        }
        walk(&mut self.root, f);
    }

    /// An empty table.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` for `method` and `pattern`.
    ///
    /// # Errors
    /// When the pattern is malformed, has too many parameters, or the same
    /// method and shape is already routed.
    pub fn insert(&mut self, method: Method, pattern: &str, value: T) -> Result<(), RouteError> {
        let fail = |why: &str| Err(RouteError(format!("route {method:?} {pattern}: {why}")));
        let Some(rest) = pattern.strip_prefix('/') else {
            return fail("must start with '/'");
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let mut names: Vec<&str> = Vec::new();
        let mut node = &mut self.root;
        for (i, segment) in segments.iter().enumerate() {
            match parse_segment(segment) {
                Segment::Tail(name) if i + 1 == segments.len() => {
                    names.push(name);
                    check_names(&names).or_else(|why| fail(&why))?;
                    let tail = node.tail.get_or_insert_with(|| (name.into(), Vec::new()));
                    if &*tail.0 != name {
                        return fail("conflicts with a tail of another name");
                    }
                    return add_method(&mut tail.1, method, value).or_else(&fail);
                }
                Segment::Tail(_) => return fail("a {*tail} must be the last segment"),
                Segment::Param(name) => {
                    names.push(name);
                    let param = node
                        .param
                        .get_or_insert_with(|| (name.into(), Box::default()));
                    if &*param.0 != name {
                        return fail("conflicts with a parameter of another name");
                    }
                    node = &mut param.1;
                }
                Segment::Literal(text) => {
                    if text.contains(['{', '}']) {
                        return fail("braces must enclose a whole segment");
                    }
                    let at = if let Some(at) = node.literals.iter().position(|(l, _)| &**l == text)
                    {
                        at
                    } else {
                        node.literals.push((text.into(), Node::default()));
                        node.literals.len() - 1
                    };
                    node = &mut node.literals[at].1;
                }
            }
        }
        check_names(&names).or_else(|why| fail(&why))?;
        add_method(&mut node.methods, method, value).or_else(fail)
    }

    /// Finds the route for `method` and `path`, writing matched parameters
    /// into `params`.
    pub fn lookup<'r, 'p>(
        &'r self,
        method: Method,
        path: &'p str,
        params: &mut [(&'r str, &'p str); MAX_PARAMS],
    ) -> Lookup<'r, T> {
        let Some(rest) = path.strip_prefix('/') else {
            return Lookup::NotFound;
        };
        match find(&self.root, rest, params, 0) {
            Some((methods, count)) => match pick(methods, method) {
                Some(value) => Lookup::Found(value, count),
                None => Lookup::MethodNotAllowed(methods),
            },
            None => Lookup::NotFound,
        }
    }
}

enum Segment<'a> {
    Literal(&'a str),
    Param(&'a str),
    Tail(&'a str),
}

fn parse_segment(segment: &str) -> Segment<'_> {
    match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(inner) => match inner.strip_prefix('*') {
            Some(name) => Segment::Tail(name),
            None => Segment::Param(inner),
        },
        None => Segment::Literal(segment),
    }
}

fn check_names(names: &[&str]) -> Result<(), String> {
    if names.len() > MAX_PARAMS {
        return Err(format!("more than {MAX_PARAMS} parameters"));
    }
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "parameter name '{name}' must be letters, digits or '_'"
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("parameter '{name}' appears twice"));
        }
    }
    Ok(())
}

fn add_method<T>(
    methods: &mut Vec<(Method, T)>,
    method: Method,
    value: T,
) -> Result<(), &'static str> {
    if method == Method::Other {
        return Err("extension methods cannot be routed");
    }
    if methods.iter().any(|(m, _)| *m == method) {
        return Err("already routed");
    }
    methods.push((method, value));
    methods.sort_by_key(|(m, _)| *m);
    Ok(())
}

/// The value for `method`; `HEAD` falls back to `GET`.
fn pick<T>(methods: &[(Method, T)], method: Method) -> Option<&T> {
    let exact = methods.iter().find(|(m, _)| *m == method);
    let fallback = || {
        methods
            .iter()
            .find(|(m, _)| method == Method::Head && *m == Method::Get)
    };
    exact.or_else(fallback).map(|(_, v)| v)
}

/// Depth-first match of `rest` (the path after a `/`) below `node`.
fn find<'r, 'p, T>(
    node: &'r Node<T>,
    rest: &'p str,
    params: &mut [(&'r str, &'p str); MAX_PARAMS],
    count: usize,
) -> Option<(&'r [(Method, T)], usize)> {
    let (segment, next) = match rest.split_once('/') {
        Some((segment, next)) => (segment, Some(next)),
        None => (rest, None),
    };
    let descend =
        |child: &'r Node<T>, params: &mut [(&'r str, &'p str); MAX_PARAMS], count| match next {
            Some(next) => find(child, next, params, count),
            None if !child.methods.is_empty() => Some((child.methods.as_slice(), count)),
            None => None,
        };
    if let Some((_, child)) = node.literals.iter().find(|(l, _)| **l == *segment)
        && let Some(found) = descend(child, params, count)
    {
        return Some(found);
    }
    if let Some((name, child)) = &node.param
        && !segment.is_empty()
        && count < MAX_PARAMS
    {
        params[count] = (name, segment);
        if let Some(found) = descend(child, params, count + 1) {
            return Some(found);
        }
    }
    if let Some((name, methods)) = &node.tail
        && count < MAX_PARAMS
    {
        params[count] = (name, rest);
        return Some((methods.as_slice(), count + 1));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{Lookup, MAX_PARAMS, Method, Router};

    fn table() -> Router<&'static str> {
        let mut router = Router::new();
        for (method, pattern, name) in [
            (Method::Get, "/", "root"),
            (Method::Get, "/users/me", "me"),
            (Method::Get, "/users/{id}", "user"),
            (Method::Delete, "/users/{id}", "delete"),
            (Method::Get, "/users/{id}/posts/{post}", "post"),
            (Method::Get, "/files/{*path}", "files"),
            (Method::Get, "/users/me/settings", "settings"),
        ] {
            router.insert(method, pattern, name).unwrap();
        }
        router
    }

    fn find(router: &Router<&'static str>, method: Method, path: &str) -> String {
        let mut params = [("", ""); MAX_PARAMS];
        match router.lookup(method, path, &mut params) {
            Lookup::Found(name, count) => {
                let found: Vec<String> = params[..count]
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                format!("{name} {}", found.join(","))
            }
            Lookup::MethodNotAllowed(methods) => {
                let allowed: Vec<_> = methods.iter().map(|(m, _)| m.as_str()).collect();
                format!("405 {}", allowed.join(","))
            }
            Lookup::NotFound => "404".into(),
        }
    }

    #[test]
    fn matches() {
        let router = table();
        assert_eq!(find(&router, Method::Get, "/"), "root ");
        assert_eq!(find(&router, Method::Get, "/users/me"), "me ");
        assert_eq!(find(&router, Method::Get, "/users/42"), "user id=42");
        assert_eq!(find(&router, Method::Head, "/users/42"), "user id=42");
        assert_eq!(find(&router, Method::Delete, "/users/42"), "delete id=42");
        assert_eq!(
            find(&router, Method::Get, "/users/me/posts/3"),
            "post id=me,post=3"
        );
        assert_eq!(
            find(&router, Method::Get, "/users/me/settings"),
            "settings "
        );
        assert_eq!(
            find(&router, Method::Get, "/files/a/b.txt"),
            "files path=a/b.txt"
        );
        assert_eq!(find(&router, Method::Get, "/files/"), "files path=");
    }

    #[test]
    fn misses() {
        let router = table();
        assert_eq!(find(&router, Method::Post, "/users/42"), "405 GET,DELETE");
        assert_eq!(find(&router, Method::Get, "/users"), "404");
        assert_eq!(find(&router, Method::Get, "/users/"), "404");
        assert_eq!(find(&router, Method::Get, "/nope"), "404");
        assert_eq!(find(&router, Method::Get, "nope"), "404");
    }

    #[test]
    fn rejects_bad_patterns() {
        let mut router = table();
        assert!(router.insert(Method::Get, "/users/{id}", "again").is_err());
        assert!(router.insert(Method::Get, "/users/{other}/x", "x").is_err());
        assert!(router.insert(Method::Get, "/a/{*t}/b", "x").is_err());
        assert!(router.insert(Method::Get, "/a{b}", "x").is_err());
        assert!(router.insert(Method::Get, "/{a}/{a}", "x").is_err());
        assert!(router.insert(Method::Get, "no-slash", "x").is_err());
    }
}
