//! The role book: privileges, the privileges they include, and roles made of
//! privileges, loaded from a roles file in the shape of 4D's `roles.json`:
//!
//! ```yaml
//! privileges:
//!   - privilege: viewSales
//!     includes: [viewBasic]
//!   - privilege: viewBasic
//! roles:
//!   - role: Manager
//!     privileges: [viewSales]
//! ```
//!
//! Names are case-insensitive (kept lower-case). Every privilege's closure
//! through `includes` is computed once at load, so a check is a few hash
//! lookups. An invalid file is an error, never an empty book: start-up fails
//! and a reload keeps the previous book.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::clock::UnixMillis;

use super::invalid::{InvalidInput, Violations};
use super::session::Grants;

const MAX_NAME_LEN: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    #[serde(default)]
    privileges: Vec<PrivilegeDef>,
    #[serde(default)]
    roles: Vec<RoleDef>,
    /// 4D's files also carry permissions on data; sessiond does not use them.
    #[serde(default, rename = "permissions")]
    _permissions: serde_yaml::Value,
    #[serde(default, rename = "forceLogin")]
    _force_login: serde_yaml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivilegeDef {
    privilege: String,
    #[serde(default)]
    includes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDef {
    role: String,
    #[serde(default)]
    privileges: Vec<String>,
}

/// Why a roles file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RolesFileError {
    #[error("cannot read roles file {path}")]
    Read { path: String, source: std::io::Error },
    #[error("roles file does not parse")]
    Parse(#[from] serde_yaml::Error),
    #[error("roles file is invalid: {0}")]
    Invalid(String),
}

/// Privileges and roles, with every privilege's closure precomputed.
#[derive(Debug, Default, Clone)]
pub struct RoleBook {
    /// privilege → itself and everything it includes, transitively.
    closures: NameMap<NameSet>,
    /// role → the union of its privileges' closures.
    roles: NameMap<NameSet>,
}

/// Maps and sets of names, read by every privilege check. They hash with
/// foldhash, several times cheaper than std's SipHash on short names:
/// their contents come from the roles file, so a caller cannot flood them
/// with colliding names, only look names up.
type NameMap<V> = HashMap<String, V, foldhash::fast::RandomState>;
type NameSet = HashSet<String, foldhash::fast::RandomState>;

/// Checks the shape of a privilege or role name and lower-cases it.
pub fn normalize_name(name: &str, field: &str) -> Result<String, InvalidInput> {
    Ok(checked_name(name, field)?.to_lowercase())
}

/// [`normalize_name`] of a request's own text: kept as it is, without a
/// copy, when it is canonical already (ASCII without upper case or
/// surrounding space), as names sent by programs usually are.
pub fn normalize_owned_name(name: String, field: &str) -> Result<String, InvalidInput> {
    // Printable ASCII (no space, no control) passes every check of
    // `checked_name` in one look at each byte.
    let canonical = (1..=MAX_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase());
    if canonical { Ok(name) } else { normalize_name(&name, field) }
}

/// `name` without surrounding space, if it may be a name.
fn checked_name<'a>(name: &'a str, field: &str) -> Result<&'a str, InvalidInput> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(InvalidInput::new(field, "must not be empty"));
    }
    if trimmed.contains('\0') {
        return Err(InvalidInput::new(field, "must not contain NUL characters"));
    }
    if trimmed.len() > MAX_NAME_LEN || trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(InvalidInput::new(field, format!("must be at most {MAX_NAME_LEN} characters without spaces")));
    }
    Ok(trimmed)
}

impl RoleBook {
    pub fn load(path: &Path) -> Result<Self, RolesFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| RolesFileError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// Parses YAML or JSON (JSON being YAML).
    pub fn parse(text: &str) -> Result<Self, RolesFileError> {
        let file: RolesFile = serde_yaml::from_str(text)?;
        let invalid = |message: String| RolesFileError::Invalid(message);

        let mut includes: HashMap<String, Vec<String>> = HashMap::new();
        for def in &file.privileges {
            let name = normalize_name(&def.privilege, "privilege")
                .map_err(|e| invalid(format!("privilege {:?} {}", def.privilege, e.description)))?;
            let inner = def
                .includes
                .iter()
                .map(|i| {
                    normalize_name(i, "includes")
                        .map_err(|e| invalid(format!("include {i:?} of {name} {}", e.description)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if includes.insert(name.clone(), inner).is_some() {
                return Err(invalid(format!("privilege {name} is defined twice")));
            }
        }
        for (name, inner) in &includes {
            if let Some(missing) = inner.iter().find(|i| !includes.contains_key(*i)) {
                return Err(invalid(format!("privilege {name} includes undefined privilege {missing}")));
            }
        }

        if let Some(cycle) = find_cycle(&includes) {
            return Err(invalid(format!("privileges include each other in a cycle: {}", cycle.join(" -> "))));
        }

        let closures: NameMap<NameSet> =
            includes.keys().map(|name| (name.clone(), closure_of(name, &includes))).collect();

        let mut roles = NameMap::default();
        for def in &file.roles {
            let name = normalize_name(&def.role, "role")
                .map_err(|e| invalid(format!("role {:?} {}", def.role, e.description)))?;
            let mut held = NameSet::default();
            for privilege in &def.privileges {
                let privilege = privilege.to_lowercase();
                let closure = closures
                    .get(privilege.trim())
                    .ok_or_else(|| invalid(format!("role {name} names undefined privilege {privilege}")))?;
                held.extend(closure.iter().cloned());
            }
            if roles.insert(name.clone(), held).is_some() {
                return Err(invalid(format!("role {name} is defined twice")));
            }
        }
        Ok(Self { closures, roles })
    }

    /// A known privilege's canonical name, or an InvalidArgument for `field`.
    pub fn privilege(&self, name: &str, field: &str) -> Result<String, InvalidInput> {
        self.known_privilege(normalize_name(name, field)?, field)
    }

    /// [`RoleBook::privilege`] of a request's own text, kept without a
    /// copy when it is canonical already.
    pub fn privilege_owned(&self, name: String, field: &str) -> Result<String, InvalidInput> {
        self.known_privilege(normalize_owned_name(name, field)?, field)
    }

    fn known_privilege(&self, name: String, field: &str) -> Result<String, InvalidInput> {
        if self.closures.contains_key(&name) {
            Ok(name)
        } else {
            Err(InvalidInput::new(field, format!("unknown privilege {name:?}")))
        }
    }

    /// A known role's canonical name, or an InvalidArgument for `field`.
    pub fn role(&self, name: &str, field: &str) -> Result<String, InvalidInput> {
        let name = normalize_name(name, field)?;
        if self.roles.contains_key(&name) {
            Ok(name)
        } else {
            Err(InvalidInput::new(field, format!("unknown role {name:?}")))
        }
    }

    /// Canonical names of requested privileges and roles, duplicates
    /// dropped, recording every violation (`privileges[i]`, `roles[i]`, or
    /// a list of more than `max` names).
    pub fn grants(&self, privileges: &[String], roles: &[String], max: usize, violations: &mut Violations) -> Grants {
        Grants {
            privileges: self.names(privileges, "privileges", max, Self::privilege, violations),
            roles: self.names(roles, "roles", max, Self::role, violations),
            promotions: Vec::new(),
        }
    }

    /// Canonical names of known privileges, for `field[i]`, duplicates
    /// kept in place (CheckPrivileges answers one result per name).
    pub fn privileges(&self, names: Vec<String>, field: &str, max: usize, violations: &mut Violations) -> Vec<String> {
        if !violations.count(names.len(), field, max) {
            return Vec::new();
        }
        names
            .into_iter()
            .enumerate()
            .filter_map(|(i, name)| {
                // The entry's full name is spelt out only for an answer that names it.
                let parsed = self
                    .privilege_owned(name, field)
                    .map_err(|e| InvalidInput::new(format!("{field}[{i}]"), e.description));
                violations.check(parsed)
            })
            .collect()
    }

    fn names(
        &self,
        names: &[String],
        field: &str,
        max: usize,
        parse: fn(&Self, &str, &str) -> Result<String, InvalidInput>,
        violations: &mut Violations,
    ) -> Vec<String> {
        if !violations.count(names.len(), field, max) {
            return Vec::new();
        }
        let mut parsed = Vec::new();
        for (i, name) in names.iter().enumerate() {
            // The entry's full name is spelt out only for an answer that names it.
            let parsed_name =
                parse(self, name, field).map_err(|e| InvalidInput::new(format!("{field}[{i}]"), e.description));
            match violations.check(parsed_name) {
                Some(name) if !parsed.contains(&name) => parsed.push(name),
                _ => {}
            }
        }
        parsed
    }

    /// Every privilege held: granted ones and promotions in force, through
    /// their includes, plus the privileges of granted roles. A trusted
    /// session holds every privilege the book defines. Names the book no
    /// longer defines (after a reload) grant nothing.
    pub fn expand(&self, grants: &Grants, trusted: bool, now: UnixMillis) -> BTreeSet<String> {
        if trusted {
            return self.closures.keys().cloned().collect();
        }
        let mut held = BTreeSet::new();
        let direct = grants
            .privileges
            .iter()
            .chain(grants.promotions.iter().filter(|p| p.expires_at > now).map(|p| &p.privilege));
        for name in direct {
            if let Some(closure) = self.closures.get(name) {
                held.extend(closure.iter().cloned());
            }
        }
        for role in &grants.roles {
            if let Some(privileges) = self.roles.get(role) {
                held.extend(privileges.iter().cloned());
            }
        }
        held
    }

    /// Whether `privilege` (canonical) is held, without building the set.
    pub fn holds(&self, grants: &Grants, trusted: bool, now: UnixMillis, privilege: &str) -> bool {
        let named = GrantNames {
            privileges: grants.privileges.iter().map(String::as_str),
            promotions: grants.promotions.iter().map(|p| (p.privilege.as_str(), p.expires_at)),
            roles: grants.roles.iter().map(String::as_str),
        };
        self.holds_named(named, trusted, now, privilege)
    }

    /// [`RoleBook::holds`] of grants given by name, wherever they are read
    /// from (a packed record, say).
    pub fn holds_named<'a>(
        &self,
        grants: GrantNames<
            impl Iterator<Item = &'a str>,
            impl Iterator<Item = (&'a str, UnixMillis)>,
            impl Iterator<Item = &'a str>,
        >,
        trusted: bool,
        now: UnixMillis,
        privilege: &str,
    ) -> bool {
        if trusted {
            return true;
        }
        let GrantNames { mut privileges, mut promotions, mut roles } = grants;
        let via = |name: &str| self.closures.get(name).is_some_and(|c| c.contains(privilege));
        privileges.any(via)
            || promotions.any(|(name, expires_at)| expires_at > now && via(name))
            || roles.any(|r| self.roles.get(r).is_some_and(|p| p.contains(privilege)))
    }
}

/// A session's grants by name: its privileges, its promotions with when
/// each lapses, and its roles.
#[derive(Debug)]
pub struct GrantNames<P, T, R> {
    pub privileges: P,
    pub promotions: T,
    pub roles: R,
}

/// A cycle of `includes`, as the names along it (the first repeated at
/// the end), if there is one. Depth-first, in name order, so the same file
/// always names the same cycle.
fn find_cycle(includes: &HashMap<String, Vec<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        includes: &'a HashMap<String, Vec<String>>,
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| *n == name) {
            let mut cycle: Vec<String> = path[start..].iter().map(|n| (*n).to_owned()).collect();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if done.contains(name) {
            return None;
        }
        path.push(name);
        for next in includes.get(name).into_iter().flatten() {
            if let Some(cycle) = visit(next, includes, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(name);
        None
    }
    let mut names: Vec<&String> = includes.keys().collect();
    names.sort();
    let mut done = HashSet::new();
    names.into_iter().find_map(|name| visit(name, includes, &mut Vec::new(), &mut done))
}

fn closure_of(name: &str, includes: &HashMap<String, Vec<String>>) -> NameSet {
    let mut seen = NameSet::default();
    let mut stack = vec![name.to_owned()];
    while let Some(next) = stack.pop() {
        if seen.insert(next.clone()) {
            stack.extend(includes.get(&next).into_iter().flatten().cloned());
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requests_own_name_normalizes_as_a_borrowed_one_does() {
        let long = "a".repeat(MAX_NAME_LEN);
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        for name in [
            "orders.read",
            "Orders.Read",
            " orders.read ",
            "ÉCRIRE",
            "écrire",
            "",
            "   ",
            "a b",
            "a\tb",
            "a\0b",
            "a\u{7f}",
            long.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(normalize_owned_name(name.to_owned(), "f"), normalize_name(name, "f"), "{name:?}");
        }
    }

    const BOOK: &str = r#"{
        "privileges": [
            {"privilege": "viewSales", "includes": ["viewBasic"]},
            {"privilege": "viewBasic"},
            {"privilege": "editSales", "includes": ["viewSales"]}
        ],
        "roles": [{"role": "Manager", "privileges": ["editSales"]}]
    }"#;

    #[test]
    fn includes_and_roles_expand_transitively_and_case_insensitively() {
        let book = RoleBook::parse(BOOK).expect("the sample book is valid");
        let grants = Grants { roles: vec![book.role("MANAGER", "roles").unwrap()], ..Grants::default() };
        let held = book.expand(&grants, false, UnixMillis(0));
        assert_eq!(held.into_iter().collect::<Vec<_>>(), ["editsales", "viewbasic", "viewsales"]);
        assert!(book.holds(&grants, false, UnixMillis(0), "viewbasic"));
    }

    #[test]
    fn unknown_names_are_invalid_arguments() {
        let book = RoleBook::parse(BOOK).unwrap();
        assert_eq!(book.privilege("nope", "privilege").unwrap_err().field, "privilege");
        assert!(book.role("viewSales", "roles").is_err());
    }

    #[test]
    fn promotions_grant_until_they_expire() {
        let book = RoleBook::parse(BOOK).unwrap();
        let grants = Grants {
            promotions: vec![super::super::session::Promotion {
                id: super::super::ids::PromotionId::generate(),
                privilege: "viewsales".into(),
                expires_at: UnixMillis(10),
            }],
            ..Grants::default()
        };
        assert!(book.holds(&grants, false, UnixMillis(9), "viewbasic"));
        assert!(!book.holds(&grants, false, UnixMillis(10), "viewbasic"));
    }

    #[test]
    fn a_cycle_of_includes_is_refused_naming_it() {
        let text = r#"{"privileges":[
            {"privilege":"a","includes":["b"]},
            {"privilege":"b","includes":["c"]},
            {"privilege":"c","includes":["a"]},
            {"privilege":"d","includes":["a"]}]}"#;
        let err = RoleBook::parse(text).unwrap_err().to_string();
        assert!(err.contains("a -> b -> c -> a"), "{err}");
        let itself = RoleBook::parse(r#"{"privileges":[{"privilege":"a","includes":["A"]}]}"#).unwrap_err();
        assert!(itself.to_string().contains("a -> a"), "{itself}");
    }

    #[test]
    fn a_broken_file_is_refused() {
        assert!(RoleBook::parse("privileges: [").is_err());
        assert!(RoleBook::parse(r#"{"privileges":[{"privilege":"a","includes":["b"]}]}"#).is_err());
        assert!(RoleBook::parse(r#"{"roles":[{"role":"r","privileges":["x"]}]}"#).is_err());
    }
}
