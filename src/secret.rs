//! [`Secret`]: a setting that never prints, such as a database URL that
//! holds a password. It is read from the settings and handed, still
//! secret, to the code that connects; only that code looks inside.

/// A value that must never be printed: `{:?}` shows `<secret>`, and it has
/// no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value itself, for the one place that uses it (a connect call).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn a_secret_prints_redacted() {
        let secret = Secret::from("postgres://u:hunter2@db/x");
        assert_eq!(format!("{secret:?}"), "<secret>");
        assert_eq!(secret.expose(), "postgres://u:hunter2@db/x");
    }
}
