//! Faults of a request found while parsing it: an invalid field
//! ([`InvalidInput`]), every one of a request ([`Violations`],
//! [`InvalidRequest`]), and a request that would take a session past a
//! quota ([`QuotaExceeded`]). The service answers them as its own errors
//! (`service::Error`).

/// One invalid request field: which one (as a proto field path) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidInput {
    pub field: String,
    pub description: String,
}

impl InvalidInput {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }

    /// Checks a free-text field: at most `max_bytes`, and no NUL character
    /// (which no store can keep as text).
    pub fn check_text(value: &str, field: &str, max_bytes: usize) -> Option<Self> {
        if value.len() > max_bytes {
            Some(Self::new(field, format!("must be at most {max_bytes} bytes")))
        } else if value.contains('\0') {
            Some(Self::new(field, "must not contain NUL characters"))
        } else {
            None
        }
    }
}

/// Violations a `BadRequest` lists; past that, it counts the rest, so a
/// request of thousands of bad items is answered with a bounded status.
const MAX_LISTED: usize = 100;

/// Every violation of one request, collected in one pass over all its
/// fields, so that one `BadRequest` names them all.
#[derive(Debug, Default)]
pub struct Violations {
    listed: Vec<InvalidInput>,
    unlisted: usize,
}

impl Violations {
    pub fn push(&mut self, violation: InvalidInput) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(violation);
        } else {
            self.unlisted += 1;
        }
    }

    /// The parsed value, or `None` with the reason recorded.
    pub fn check<T>(&mut self, parsed: Result<T, InvalidInput>) -> Option<T> {
        parsed.map_err(|v| self.push(v)).ok()
    }

    /// Records a free-text field over `max_bytes` or holding a NUL.
    pub fn text(&mut self, value: &str, field: &str, max_bytes: usize) {
        if let Some(violation) = InvalidInput::check_text(value, field, max_bytes) {
            self.push(violation);
        }
    }

    /// Records a list-shaped field with more than `max` items; every such
    /// field is limited, and the limit is the same in every call. Answers
    /// whether the list is within it (its items are worth checking).
    pub fn count(&mut self, len: usize, field: &str, max: usize) -> bool {
        if len > max {
            self.push(InvalidInput::new(field, format!("must have at most {max} items, not {len}")));
        }
        len <= max
    }

    /// The parsed request when nothing was found wrong, otherwise one
    /// error naming every violation. `parsed` is `None` only when a
    /// violation was recorded.
    pub fn finish<T>(mut self, parsed: Option<T>) -> Result<T, InvalidRequest> {
        match parsed {
            Some(value) if self.listed.is_empty() => Ok(value),
            _ if self.listed.is_empty() => Err(InvalidRequest(vec![InvalidInput::new("", "invalid request")])),
            _ => {
                if self.unlisted > 0 {
                    let more = format!("and {} more invalid fields, not listed", self.unlisted);
                    self.listed.push(InvalidInput::new("", more));
                }
                Err(InvalidRequest(self.listed))
            }
        }
    }
}

/// Runs `parse`, which builds a request from parsed parts with `?`:
/// `all(|| Some(Request { a: a?, b: b? }))`.
pub fn all<T>(parse: impl FnOnce() -> Option<T>) -> Option<T> {
    parse()
}

/// Every invalid field of one request, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest(pub Vec<InvalidInput>);

/// A request that would take something past a quota: which (`subject`)
/// and by what rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub subject: String,
    pub description: String,
}
